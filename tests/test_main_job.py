"""The main job as a user runs it: the shipped `main` recipe, every method's step, one report, then a
second run that trains nothing. Only the pretrain step and the scaling study's token budgets are cut,
to keep CI's suite short."""

from __future__ import annotations

import math

import pytest

from asymptote.flows.main import main_job
from asymptote.main_config import STEPS, MainConfig
from asymptote.recipes import resolve
from asymptote.store import Store

pytestmark = pytest.mark.slow

SECTIONS = {
    "pretrain": "## Pre-training",
    "scaling": "## Pre-training under infinite compute",
    "distill": "## Ensemble distillation",
    "soups": "## Model soups",
    "autolrs": "## AutoLRS",
}
PLOTS = {
    "pretrain-loss.png",
    "scaling-loss-vs-params.png",
    "scaling-loss-vs-members.png",
    "distill-compare.png",
    "soups-heldout-vs-test.png",
    "autolrs-schedule.png",
}


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
            "scaling.budget=10000",
            "scaling.efficiency.budgets=[5000,20000]",
        ],
    )
    assert config.steps == list(STEPS)  # the shipped recipe runs every method

    first = main_job(config)
    store = Store(config.store)
    report_rel = store.relpath(first.report_uri).rsplit("/", 1)[0]
    markdown = store.read(report_rel, "report.md").decode()
    for step, heading in SECTIONS.items():
        assert heading in markdown, step
    assert PLOTS <= set(store.manifest(report_rel).files)
    assert set(first.figures) == set(STEPS)
    assert math.isfinite(first.figures["distill"]["ensemble"])
    assert first.figures["distill"]["ensemble"] < first.figures["distill"]["single"]  # an ensemble helps
    runs = _committed_runs(store)
    assert (
        len(runs) > 20
    )  # pretrain, the scaling searches and members, teachers, students, fine-tunes, AutoLRS

    second = main_job(config)
    assert second.figures == first.figures and second.report_uri == first.report_uri
    assert _committed_runs(store) == runs  # nothing retrained, nothing rewritten
