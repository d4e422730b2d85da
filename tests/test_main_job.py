"""The main job as a user runs it: the shipped `main` recipe, every method (a step, or a stage of the
recipe step), one report, then a second run that trains nothing. Only the pretrain step and the
scaling study's token budgets are cut, to keep CI's suite short."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from asymptote import report_check
from asymptote.cli import app
from asymptote.flows.main import main_job
from asymptote.flows.registry import STEPS, MainConfig
from asymptote.recipes import resolve
from asymptote.store import Store

pytestmark = pytest.mark.slow

SECTIONS = {
    "pretrain": "## Pre-training",
    "recipe": "## Recipe",
    "scaling": "### Pre-training under infinite compute",  # the recipe's stages, one level down
    "distill": "### Ensemble distillation",
    "soups": "### Model soups",
    "autolrs": "## AutoLRS",
}
PLOTS = {
    "pretrain-loss.png",
    "recipe-scaling-loss-vs-params.png",
    "recipe-scaling-loss-vs-members.png",
    "recipe-distill-compare.png",
    "recipe-soups-heldout-vs-test.png",
    "autolrs-schedule.png",
}
RECIPE_STAGES = {"scaling", "distill", "soups"}


def _committed_runs(store: Store) -> dict[str, str]:
    return {rel: store.manifest(rel).created for rel in store.artifacts("runs")}


def test_main_recipe_runs_every_method_and_reuses_everything(ray_local, prefect_api, store_uri):
    config = resolve(
        MainConfig,
        "main",
        [
            f"store.uri={store_uri}",
            "pretrain.train.max_steps=30",
            "pretrain.train.eval_every=30",
            "recipe.scaling.budget=10000",
            "recipe.scaling.efficiency.budgets=[2500,5000,20000]",
        ],
    )
    assert set(config.steps) | RECIPE_STAGES == set(STEPS)  # every method: a step or a recipe stage

    first = main_job(config)
    store = Store(config.store)
    report_rel = store.relpath(first.report_uri).rsplit("/", 1)[0]
    markdown = store.read(report_rel, "report.md").decode()
    for step, heading in SECTIONS.items():
        assert heading in markdown, step
    assert PLOTS <= set(store.manifest(report_rel).files)
    files = {name: store.read(report_rel, name) for name in store.manifest(report_rel).files}
    assert report_check.check_report(markdown, files) == []  # the demo's report agrees with itself
    assert report_check.check(first.figures) == []
    for flops in ("3e10", "1e11"):  # issue 38: `asymptote plan` after the demo
        plan = CliRunner().invoke(app, ["plan", "--store", store_uri, "--flops", flops])
        assert plan.exit_code in (0, 2), plan.output  # a plan, or a refusal that says why
        text = " ".join(plan.output.split())  # the console wraps long lines
        assert "no scaling study" not in text and report_check.check_text(text) == [], plan.output
        if "no identified law" in text:  # the demo's 3 sizes: every option named with its reason
            assert all(f"{o}: " in text for o in ("standard", "regularized")), plan.output
    assert set(first.figures) == set(config.steps)
    ladder = first.figures["recipe"]["test_loss"]  # the recipe's ladder, on test
    assert math.isfinite(ladder["ensemble of 2"])
    assert ladder["ensemble of 2"] < ladder["single regularized"]  # an ensemble helps
    assert first.figures["recipe"]["final"] in ladder
    law, multipliers = first.figures["recipe"]["data_law"], first.figures["recipe"]["data_multiplier"]
    assert law["budgets"] == [2500, 5000, 10000, 20000] and set(multipliers) == set(ladder)
    if law["identified"]:  # issue 39: each rung's data multiplier, or the ladder says why there is none
        assert all(m is not None for m in multipliers.values()) and "Data x standard" in markdown
    else:
        assert law["reason"] and "No data multiplier" in markdown
    assert set(first.summaries) == set(config.steps)  # what `asymptote run` prints at its end
    assert all(f"{name} " in first.summaries["recipe"] for name in ladder)
    assert "data multiplier" in first.summaries["recipe"]  # the final model's, or why there is none
    runs = _committed_runs(store)
    assert len(runs) > 20  # pretrain, the scaling searches and members, students, fine-tunes, AutoLRS

    second = main_job(config)
    assert second.figures == first.figures and second.report_uri == first.report_uri
    assert _committed_runs(store) == runs  # nothing retrained, nothing rewritten
