"""The recipe: its config, its ladder, and the chain end to end on real local Ray and a real Prefect API."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from helpers import task_runs

from asymptote.config import ConfigError, ModelConfig, build
from asymptote.flops import inference_flops_per_token, train_flops_per_token
from asymptote.flows.recipe import run_recipe
from asymptote.ladder import Rung, climb, render, run_train_flops, sampling_flops, window_interval
from asymptote.recipe_config import RecipeConfig

SHAPE = {"n_layer": 1, "n_head": 2, "block_size": 32}
TRAIN = {
    "batch_size": 8,
    "warmup_steps": 2,
    "eval_every": 10**6,
    "log_every": 10**6,
    "checkpoint_every": 10**6,
}
FT = {"batch_size": 8, "warmup_steps": 2, "eval_every": 1000, "eval_windows": 16}


def tiny(store_uri: str, weight_decay_factor: float = 0.5) -> RecipeConfig:
    """The smallest chain: one size, 1-2 points per search, 2 members, one student, 2 fine-tunes (the
    fits have too few sizes to identify anything: this checks the hand-over, not the science)."""
    return build(
        RecipeConfig,
        {
            "name": "tiny-recipe",
            "scaling": {
                "sizes": [SHAPE | {"d_model": 24, "d_ff": 48}],
                "budget": 3000,
                "train": TRAIN,
                "search": {
                    "grid": {"lr": [3e-2], "weight_decay": [0.1, 0.8], "epochs": [1]},
                    "start": {"lr": 3e-2, "weight_decay": 0.8, "epochs": 1},
                },
                "ensemble": {"members": 2, "weight_decay_factor": weight_decay_factor},
                "efficiency": {"budgets": []},
                "seeds": 2,
                "fits": {"n_boot": 50},
            },
            "distill": {
                "student": {
                    "methods": ["token_kl"],
                    "grid": {"epochs": [1], "weight_decay": [0.1]},
                    "curve_points": 2,
                },
                "evaluation": {"n_boot": 50},
            },
            "soups": {
                "sweep": {"n_models": 2, "steps_fraction": [0.3], "lr": [3e-3, 3e-3], "basin": {"rungs": 0}},
                "soups": {"methods": ["uniform", "greedy"], "eval_windows": 16, "bootstrap": 100},
                "merges": {"methods": ["task_arithmetic"], "scales": [1.0]},
            },
            "store": {"uri": store_uri},
        },
    )


# ----------------------------------------------------------------------------- config


def test_config_defaults_are_the_bundled_recipe_and_stages_get_the_runs_they_are_handed():
    from asymptote.recipes import load_recipe

    config = RecipeConfig()
    assert build(RecipeConfig, load_recipe("recipe-tiny")).model_dump(exclude={"name"}) == config.model_dump(
        exclude={"name"}
    )
    d = config.distill_config("runs/s", ["runs/a", "runs/b"])
    assert d.teacher.members == ["runs/a", "runs/b"] and d.teacher.single == "runs/s"
    assert d.model == config.model == config.scaling.sizes[-1] and d.tokens == config.scaling.tokens
    s = config.soups_config("runs/a", ["runs/a", "runs/b"])
    assert s.base.run == "runs/a" and s.independent.runs == ["runs/a", "runs/b"]
    assert s.data.max_train_tokens == config.scaling.tokens  # fine-tunes see the members' budget
    assert config.scaling_config().store == config.store


@pytest.mark.parametrize(
    "override, message",
    [
        ({"scaling": {"data": {"val_fraction": 0.2}}}, "scaling.data is set"),
        ({"size": 3}, "size=3: no such index"),
        ({"scaling": {"ensemble": {"members": 1}}}, "needs at least 2"),
        ({"distill": {"student": {"start": {"epochs": 3}}}}, "student.start.epochs=3.0 is not on"),
        ({"soups": {"sweep": {"wrong": 1}}}, "wrong"),
    ],
)
def test_bad_configs_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        build(RecipeConfig, override)


def test_soups_take_members_as_runs_and_refuse_one():
    from asymptote.soups_config import SoupStudyConfig

    assert build(SoupStudyConfig, {"independent": {"runs": ["runs/a", "runs/b"]}}).independent.runs == [
        "runs/a",
        "runs/b",
    ]
    with pytest.raises(ConfigError, match="at least 2 members"):
        build(SoupStudyConfig, {"independent": {"runs": ["runs/a"]}})


# ----------------------------------------------------------------------------- ladder


def _rung(name: str, kind: str, val: float, test: float, k: int = 1) -> Rung:
    m = ModelConfig(**SHAPE, d_model=16, d_ff=32)
    return Rung(
        name=name,
        kind=kind,
        runs=[f"runs/{name}-{i}" for i in range(k)],
        params=1000 * k,
        inference_flops=k * inference_flops_per_token(m),
        train_flops=run_train_flops(m, 3000) * k,
        val_loss=val,
        test_loss=test,
        test_bpb=test / math.log(2),
    )


def test_ladder_keeps_the_best_student_and_soup_on_validation_and_chooses_on_validation():
    ladder = climb(
        [
            _rung("single", "single", 2.0, 2.0),
            _rung("ensemble of 2", "ensemble", 1.8, 1.9, k=2),
            _rung("student: a", "student", 1.9, 1.7),  # best on test, not on validation
            _rung("student: b", "student", 1.85, 1.95),
            _rung("soup: greedy", "soup", float("nan"), 1.0),  # diverged: never the choice
            _rung("soup: uniform", "soup", 1.95, 1.96),
        ]
    )
    assert [r.name for r in ladder.rungs] == ["single", "ensemble of 2", "student: b", "soup: uniform"]
    assert ladder.chosen == "ensemble of 2" and set(ladder.dropped) == {"student: a", "soup: greedy"}
    text = render(ladder)
    assert "**ensemble of 2** (final)" in text and "| 2.0 |" in text  # an ensemble runs 2 members
    assert "student: a 1.9000" in text and text.count("\n|") == 2 + 4
    with pytest.raises(ValueError, match="at least one"):
        climb([])


def test_training_flops_count_teacher_forwards_and_sampling():
    m = ModelConfig(**SHAPE, d_model=16, d_ff=32)
    assert run_train_flops(m, 100) == 100 * train_flops_per_token(m)
    assert run_train_flops(m, 100, [m, m]) == 100 * (
        train_flops_per_token(m) + 2 * inference_flops_per_token(m)
    )
    assert sampling_flops([m, m], 10) == 20 * inference_flops_per_token(m)
    assert 3 * inference_flops_per_token(m) == train_flops_per_token(m)


# ----------------------------------------------------------------------------- the chain


SUBFLOWS = {"scaling-study", "distill", "soups"}  # a subflow shows in its parent as a task run


def _states(flow_run_id) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in task_runs(flow_run_id):
        name = r.name.rsplit("-", 1)[0]
        if name not in SUBFLOWS:
            out.setdefault(name, []).append(r.state.name)
    return out


@pytest.mark.slow
def test_chain_hands_runs_down_caches_and_reruns_only_downstream(ray_local, prefect_api, store_uri, store):
    clock = time.monotonic()
    res = run_recipe(tiny(store_uri))
    print(f"first call {time.monotonic() - clock:.1f} s")
    h = res.handover
    assert h.size == "L1-d24" and h.members == res.scaling.members["L1-d24"] and h.base in h.members
    assert (
        res.distill.teachers.members == h.members and res.distill.teachers.single == h.single["regularized"]
    )
    assert res.soups.base == h.base and {e.name for e in res.soups.entries} >= {"aligned_avg", "uniform"}
    assert sorted(e.rel for e in res.soups.entries if e.kind == "member") == sorted(
        h.members
    )  # averaged as handed
    for ft in res.soups.finetunes:  # fine-tunes start from the handed-over member
        assert store.read_json(ft.run.rel, "config.json")["init_from"] == h.base
    kinds = [r.kind for r in res.ladder.rungs]
    assert kinds == ["single", "single", "ensemble", "student", "soup", "average"]
    for r in res.ladder.rungs:
        assert math.isfinite(r.test_loss) and r.test_bpb > 0 and r.train_flops > 0
        assert r.test_ci[0] <= r.test_loss <= r.test_ci[1]  # its interval over test windows surrounds it
    ens = res.ladder.rungs[2]
    assert ens.inference_flops == 2 * res.ladder.rungs[1].inference_flops
    assert ens.test_loss == pytest.approx(res.distill.ensemble_loss)  # one evaluator for every figure
    assert res.ladder.chosen == min(res.ladder.rungs, key=lambda r: r.val_loss).name
    assert "The ladder" in store.read(store.relpath(res.report_uri).rsplit("/", 1)[0], "report.md").decode()

    before = {rel: store.manifest(rel).created for rel in store.artifacts("runs")}
    clock = time.monotonic()
    again = run_recipe(tiny(store_uri))  # a second call trains nothing
    print(f"second call {time.monotonic() - clock:.1f} s")
    assert {rel: store.manifest(rel).created for rel in store.artifacts("runs")} == before
    # Nothing changed, so no stage was started: the chain's stored result comes back as it was made
    # (it names the flow run that made it); a deleted artifact would have made it run (test_stage_memo).
    assert again == res

    clock = time.monotonic()
    changed = run_recipe(tiny(store_uri, weight_decay_factor=0.25))  # new members: downstream reruns
    print(f"changed members {time.monotonic() - clock:.1f} s")
    new = set(store.artifacts("runs")) - set(before)
    members = set(changed.handover.members)
    assert members <= new and not members & set(before)
    assert set(changed.scaling.runs) - members <= set(before)  # searches, replicas, sweep: reused
    trained = _states(changed.scaling.flow_run_id)["train"]
    assert trained.count("Completed") == len(members) and trained.count("Cached") == len(trained) - len(
        members
    )
    assert changed.distill.students["token_kl"].run.rel in new
    assert {f.run.rel for f in changed.soups.finetunes} <= new


def test_a_window_interval_surrounds_the_mean_and_narrows_with_more_windows():
    rng = np.random.default_rng(0)
    few, many = rng.normal(2.0, 0.3, 50), rng.normal(2.0, 0.3, 5000)
    lo, hi = window_interval(few)
    assert lo < few.mean() < hi
    lo_many, hi_many = window_interval(many)
    assert lo_many < many.mean() < hi_many and hi_many - lo_many < (hi - lo) / 5
