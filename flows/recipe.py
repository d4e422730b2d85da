"""The recipe: from a pile of text to the best model it buys, each stage consuming the one before.

1. Scaling (flows/scaling.py): certified searches of the standard and regularized recipes at every
   size, seed replicas, K members at the paper's member recipe, fits and asymptotes.
2. Hand-over: of the chosen size, the certified standard and regularized single models and the K
   members, read from the study's result as run references; the soups' base is the member with the
   lowest validation loss.
3. Distillation (flows/distillation.py) taught by exactly those runs (teacher.members, teacher.single).
4. Soups (flows/soups.py): fine-tunes of the best member souped and merged, and the members' naive
   and aligned averages (independent.runs).
5. The ladder: every candidate scored by one evaluator on validation (the final choice) and on test
   (every figure), with its parameters, inference FLOPs per token and training FLOPs.

Each stage is a subflow whose cached steps are keyed by the references it was handed, never by a
matching config: change the members and distillation and soups run again, nothing upstream does.
A second call trains nothing.
"""

from __future__ import annotations

import functools
import math

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import preflight
from asymptote.config import ModelConfig, key_dict, stable_hash
from asymptote.flops import param_count
from asymptote.flows.distillation import DistillResult, distill
from asymptote.flows.scaling import ScalingStudyResult, scaling_study
from asymptote.flows.soups import SoupStudyResult, soup_study
from asymptote.infra.cluster import compute_session
from asymptote.ladder import Ladder, Rung, climb, inference_cost, render, run_train_flops, sampling_flops
from asymptote.recipe_config import RecipeConfig
from asymptote.refs import DataRef
from asymptote.store import Store
from asymptote.tasks.distill import test_eval
from asymptote.tasks.ensembles import ensemble_eval
from asymptote.tasks.reports import Report, method_report, publish_report, shift_headings
from asymptote.tasks.stage_memo import reuse_or_run


class HandOver(BaseModel):
    """What the scaling study hands down the chain: run references of one size."""

    size: str
    single: dict[str, str]
    """Recipe (standard, regularized) -> its certified optimum's run at the study's budget."""
    members: list[str]
    member_val: list[float]
    """Validation loss of each member (the base's choice)."""
    base: str
    """The member with the lowest validation loss: what the soups fine-tune."""


class RecipeResult(BaseModel):
    """What `run_recipe` returns: each stage's own result and the ladder."""

    flow_run_id: str | None
    data: DataRef
    handover: HandOver
    scaling: ScalingStudyResult
    distill: DistillResult
    soups: SoupStudyResult
    ladder: Ladder
    report_uri: str


# ----------------------------------------------------------------------------- hand-over


def hand_over(config: RecipeConfig, store: Store, scaled: ScalingStudyResult) -> HandOver:
    label = config.scaling.labels[config.size]
    single = {
        row.recipe: row.run
        for row in scaled.searches
        if row.size == label and row.budget == config.scaling.tokens
    }
    members = scaled.members[label]
    val = ensemble_eval(store, members, scaled.data.rel).result()["member"]  # the key distillation uses
    base = members[min(range(len(members)), key=lambda i: _finite(val[i]))]
    return HandOver(size=label, single=single, members=members, member_val=val, base=base)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


# ----------------------------------------------------------------------------- the ladder


def candidates(h: HandOver, distilled: DistillResult, souped: SoupStudyResult) -> list[tuple[str, str, list]]:
    """(name, kind, runs) of every model the chain made that could be the final one."""
    out = [
        ("single standard", "single", [h.single["standard"]]),
        ("single regularized", "single", [h.single["regularized"]]),
        (f"ensemble of {len(h.members)}", "ensemble", h.members),
    ]
    out += [(f"student: {m}", "student", [s.run.rel]) for m, s in distilled.students.items()]
    out += [(f"soup: {e.name}", "soup", [e.rel]) for e in souped.entries if e.kind in ("soup", "merge")]
    out += [("aligned average", "average", [e.rel]) for e in souped.entries if e.name == "aligned_avg"]
    return out


def run_flops(store: Store, rel: str) -> float:
    """Training FLOPs of a committed run, from its manifest (teachers' forwards included, one per
    student token: the compute of the method, an upper bound on what a student whose TeacherCache
    served repeated windows spent)."""
    meta = store.manifest(rel).meta
    objective = meta["config"].get("objective") or {}
    teachers = [_shape(store, t) for t in objective.get("teachers", [])]
    return run_train_flops(_shape(store, rel), int(meta["summary"]["tokens"]), teachers)


def _shape(store: Store, rel: str) -> ModelConfig:
    return ModelConfig.model_validate(store.manifest(rel).meta["model"])


def needs(h: HandOver, souped: SoupStudyResult) -> dict[str, list[str]]:
    """Per kind, the training runs a model of that kind needs besides its own (an ensemble: its members)."""
    finetunes = [f.run.rel for f in souped.finetunes] + [r for rung in souped.probe for r in rung.runs]
    return {"student": h.members, "soup": [h.base, *finetunes], "average": h.members}


def train_compute(
    store: Store, kind: str, runs: list[str], h: HandOver, distilled: DistillResult, souped: SoupStudyResult
) -> float:
    if kind in ("soup", "average"):
        runs = []  # a soup or an average is not a run: its cost is what it is made of
    flops = sum(run_flops(store, r) for r in {*runs, *needs(h, souped).get(kind, [])})
    if kind == "student" and store.manifest(runs[0]).meta["config"].get("batches"):  # it read synthetic text
        flops += sampling_flops([_shape(store, m) for m in h.members], distilled.synthetic_tokens)
    return flops


def score(
    store: Store, data: DataRef, h: HandOver, distilled: DistillResult, souped: SoupStudyResult
) -> list[Rung]:
    """Every candidate on validation and test (cached evaluations, submitted together)."""
    cands = candidates(h, distilled, souped)
    val = [ensemble_eval(store, runs, data.rel, split="val") for _, _, runs in cands]
    test = [test_eval(store, runs, data.rel) for _, _, runs in cands]
    rungs = []
    for (name, kind, runs), v, t in zip(cands, val, test, strict=True):
        shape, t = _shape(store, runs[0]), t.result()
        rungs.append(
            Rung(
                name=name,
                kind=kind,
                runs=runs,
                params=len(runs) * param_count(shape),
                inference_flops=inference_cost(shape, len(runs)),
                train_flops=train_compute(store, kind, runs, h, distilled, souped),
                val_loss=v.result()["logits"][-1],
                test_loss=t["test_loss"],
                test_bpb=t.get("test_bpb"),
            )
        )
    return rungs


# ----------------------------------------------------------------------------- the flow


@flow(name="recipe", log_prints=True)
def run_recipe(config: RecipeConfig | None = None) -> RecipeResult:
    """Scaling -> hand-over -> distillation -> soups -> the ladder and the final model."""
    config = config or RecipeConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    store = Store(config.store)
    # The chain and each of its stages run unless their stored results still hold (tasks/stage_memo.py).
    return reuse_or_run("recipe", config, store, functools.partial(_chain, config, store))


def _chain(config: RecipeConfig, store: Store) -> RecipeResult:
    with compute_session(config.compute.ray_address):
        stage = config.scaling_config()
        scaled = reuse_or_run("scaling", stage, store, lambda: scaling_study(stage))
        h = hand_over(config, store, scaled)
        taught = config.distill_config(h.single["regularized"], h.members)
        distilled = reuse_or_run("distill", taught, store, lambda: distill(taught))
        souping = config.soups_config(h.base, h.members)
        souped = reuse_or_run("soups", souping, store, lambda: soup_study(souping))
        ladder = climb(score(store, scaled.data, h, distilled, souped))
    result = RecipeResult(
        flow_run_id=flow_run.id,
        data=scaled.data,
        handover=h,
        scaling=scaled,
        distill=distilled,
        soups=souped,
        ladder=ladder,
        report_uri="",
    )
    rendered = method_report("recipe", config, result, store)
    key = stable_hash(key_dict(config))
    result.report_uri = publish_report(store, "recipe", key, rendered.markdown, rendered.files)
    return result


# ----------------------------------------------------------------------------- report


def recipe_markdown(config: RecipeConfig, result: RecipeResult, store: Store) -> str:
    h, s = result.handover, result.scaling
    links = [
        f"- scaling study: `{s.report_uri}` (asymptotes on test: {asymptotes(s)})",
        f"- distillation: `{result.distill.report_uri}`",
        f"- soups: `{result.soups.report_uri}`",
    ]
    return (
        f"# Recipe: {config.name}\n\nCorpus `{result.data.uri}`, {config.scaling.tokens:,} training tokens. "
        f"The chain ran at size {h.size}: its certified single models, its {len(h.members)} members (the "
        "paper's member recipe), students taught by those members, soups of fine-tunes of the best member "
        f"(`{h.base}`, validation {min(h.member_val):.4f}) and the members' aligned average. Every choice "
        "was made on validation; every figure below is on the test split.\n\n"
        f"{render(result.ladder)}\n"
        f"The final model's weights: {', '.join(f'`{store.uri(r)}`' for r in result.ladder.final().runs)}. "
        "Validation was read by every stage's own choices too (searches, students' settings, the soups' "
        "held-out half), so validation losses flatter every rung a little; test losses do not.\n\n"
        "## Stages\n\n" + "\n".join(links) + "\n"
    )


def asymptotes(s: ScalingStudyResult) -> str:
    """The study's fitted asymptotes in a line: value and interval, or why there is none."""
    out = []
    for name in ("standard", "regularized", "joint"):
        value, ci = s.figures.get(f"{name}_asymptote"), s.figures.get(f"{name}_asymptote_ci")
        shown = f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if value is not None and ci else "not identified"
        out.append(f"{name} {shown}")
    return ", ".join(out)


def report(
    config: RecipeConfig, result: RecipeResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    """The ladder, then each stage's own report one level down (drawn once, see method_report)."""
    h = result.handover
    stages = {
        "scaling": (config.scaling_config(), result.scaling),
        "distill": (config.distill_config(h.single["regularized"], h.members), result.distill),
        "soups": (config.soups_config(h.base, h.members), result.soups),
    }
    sections = [
        method_report(name, cfg, res, store, level=level + 1, prefix=f"{prefix}{name}-")
        for name, (cfg, res) in stages.items()
    ]
    markdown = shift_headings(recipe_markdown(config, result, store), level - 1)
    markdown += "\n\n" + "\n\n".join(s.markdown for s in sections)
    files = {n: b for s in sections for n, b in s.files.items()}
    return Report(markdown, files, figures(result))


def figures(result: RecipeResult) -> dict:
    f = result.ladder.final()
    return {
        "final": result.ladder.chosen,
        "final_test_loss": f.test_loss,
        "final_test_bpb": f.test_bpb,
        "test_loss": {r.name: r.test_loss for r in result.ladder.rungs},
        "val_loss": {r.name: r.val_loss for r in result.ladder.rungs},
    }


def summary(result: RecipeResult) -> tuple[dict, str]:
    f = result.ladder.final()
    ladder = ", ".join(f"{r.name} {r.test_loss:.4f}" for r in result.ladder.rungs)
    return figures(result), f"final: {f.name} (test {f.test_loss:.4f}); ladder (test): {ladder}"
