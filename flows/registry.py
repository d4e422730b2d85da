"""The methods asymptote runs, each declared once, above the flows it names.

Everything that lists the methods follows from this table: the CLI's commands (`asymptote.cli`), the
main job's steps and config (`MainConfig` below), the exports of `asymptote.flows`, and, checked by
tests against it, the deployments of `prefect.yaml`, the flow table of docs/api.md and the README's
command list. Adding a method: its core module and config (with its result type), its report
(`asymptote.reports.<method>`), its flow, a recipe, and one entry here.

Code is named by "module:attribute" strings, so reading the table imports nothing heavy: `asymptote
--help` answers without torch, Prefect or Ray. Nothing below this module knows the table exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from asymptote.main_config import main_config_class


@dataclass(frozen=True)
class Method:
    name: str
    """CLI command, main-job step and config section."""
    help: str
    """One line for `asymptote --help`."""
    flow: str
    """The Prefect flow: flow(config, recompute=[...]) -> result."""
    config: str
    """Its typed config class."""
    result: str
    """Its typed result class."""
    report: str
    """report(config, result, store, level=1, prefix="") -> Report: the markdown section and its plots
    (asymptote.reports.<method>)."""
    summary: str
    """summary(result) -> (headline figures, one line for the terminal)."""
    table: str
    """table(result) -> rows: the headline results its flow publishes as a Prefect table artifact."""
    recipe: str
    """The recipe its deployment runs (asymptote/recipes/<name>.yaml)."""
    steps: tuple[str, ...] = ()
    """Cached steps `--recompute` accepts; empty: the flow takes no `recompute`."""
    in_main: bool = True
    """Whether the main job can run it as a step."""
    inputs: str | None = None
    """inputs(config, earlier results by step name) -> config: how it consumes an earlier step's output."""


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="pretrain",
            flow="asymptote.flows.pretraining:pretrain",
            config="asymptote.config:PretrainConfig",
            result="asymptote.config:PretrainResult",
            report="asymptote.reports.pretrain:report",
            table="asymptote.reports.pretrain:table",
            summary="asymptote.reports.pretrain:summary",
            help="Pre-train one model: prepare data, train on Ray, evaluate.",
            recipe="pretrain",
            steps=("data", "train", "evaluate"),
        ),
        Method(
            name="scaling",
            flow="asymptote.flows.scaling:scaling_study",
            config="asymptote.scaling_config:ScalingStudyConfig",
            result="asymptote.scaling_config:ScalingStudyResult",
            report="asymptote.reports.scaling:report",
            table="asymptote.reports.scaling:table",
            summary="asymptote.reports.scaling:summary",
            help="Infinite-compute study: certified searches, parameter and ensemble scaling, asymptotes.",
            recipe="scaling-tiny",
        ),
        Method(
            name="distill",
            flow="asymptote.flows.distillation:distill",
            config="asymptote.distill_config:DistillConfig",
            result="asymptote.distill_config:DistillResult",
            report="asymptote.reports.distill:report",
            table="asymptote.reports.distill:table",
            summary="asymptote.reports.distill:summary",
            help="Distil an ensemble into one model of the single model's size (sequence, token_kl, combined).",
            recipe="distill-demo",
            steps=("data", "teachers", "evaluate", "sample", "students"),
        ),
        Method(
            name="soups",
            flow="asymptote.flows.soups:soup_study",
            config="asymptote.soups_config:SoupStudyConfig",
            result="asymptote.soups_config:SoupStudyResult",
            report="asymptote.reports.soups:report",
            table="asymptote.reports.soups:table",
            summary="asymptote.reports.soups:summary",
            help="Soups and merges of fine-tunes (a sweep, or checkpoints of the store); aligned averaging.",
            recipe="soups-tiny",
            steps=("data", "base", "sweep", "soups", "independent"),
            inputs="asymptote.flows.soups:inputs",
        ),
        Method(
            name="autolrs",
            flow="asymptote.flows.learning_rates:autolrs",
            config="asymptote.autolrs_config:AutoLRSFlowConfig",
            result="asymptote.autolrs_config:AutoLRSResult",
            report="asymptote.reports.autolrs:report",
            table="asymptote.reports.autolrs:table",
            summary="asymptote.reports.autolrs:summary",
            help="Train with AutoLRS (each stage's LR found by Bayesian optimisation); keep the schedule.",
            recipe="autolrs-cpu",
            steps=("data", "train", "schedule"),
        ),
        Method(
            name="recipe",
            flow="asymptote.flows.recipe:run_recipe",
            config="asymptote.recipe_config:RecipeConfig",
            result="asymptote.recipe_config:RecipeResult",
            report="asymptote.reports.recipe:report",
            table="asymptote.reports.recipe:table",
            summary="asymptote.reports.recipe:summary",
            help="The chain in one call: scaling -> distillation from its members -> soups -> the final model.",
            recipe="recipe-tiny",
        ),
        Method(
            name="autolrs-search",
            flow="asymptote.flows.learning_rates:autolrs_search",
            config="asymptote.autolrs_config:AutoLRSSearchConfig",
            result="asymptote.autolrs_config:AutoLRSSearchResult",
            report="asymptote.reports.autolrs:search_report",
            table="asymptote.reports.autolrs:search_table",
            summary="asymptote.reports.autolrs:search_summary",
            help="Ray Tune search over weight decay with AutoLRS as every trial's schedule.",
            recipe="autolrs-search",
            in_main=False,
        ),
    )
}

STEPS = [name for name, m in METHODS.items() if m.in_main]
"""The methods the main job can run as steps, in the registry's order."""

MainConfig = main_config_class({name: (METHODS[name].config, METHODS[name].help) for name in STEPS})

# The main job is not a method but is exported and deployed like one.
MAIN = {
    "flow": "asymptote.flows.main:main_job",
    "config": "asymptote.flows.registry:MainConfig",
    "result": "asymptote.flows.main:MainResult",
    "recipe": "main",
}


def flows() -> dict[str, dict[str, str]]:
    """Every exported flow by name -> its flow, config, result ("module:attribute") and recipe."""
    entries = [
        {"flow": m.flow, "config": m.config, "result": m.result, "recipe": m.recipe} for m in METHODS.values()
    ]
    return {e["flow"].split(":")[1]: e for e in [*entries, MAIN]}


def exports() -> dict[str, str]:
    """Public names of `asymptote.flows` -> "module:attribute" (flows, their configs and results)."""
    targets = [e[k] for e in flows().values() for k in ("flow", "config", "result")]
    return {t.split(":")[1]: t for t in targets}
