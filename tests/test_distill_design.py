"""The distillation study's design, pure: the baseline searched as hard as the students, grids that grow
past a chosen edge, seeds and the no-teacher control, hierarchical intervals, and the bench protocol."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from asymptote.config import ConfigError, build
from asymptote.distill_config import DistillConfig, StudentGrid, StudentPoint, Teachers
from asymptote.distill_plan import control_job, single_descent, single_grid, student_job
from asymptote.distill_search import (
    StudentDescent,
    grow,
    leave_one_out,
    member_pseudo_seeds,
    next_value,
    retention,
    settled_edges,
)
from asymptote.refs import DataRef
from asymptote.scaling import CoordinateDescent
from asymptote.search_space import Point, SearchGrid

ROOT = Path(__file__).resolve().parents[1]
TINY = {"n_layer": 1, "n_head": 2, "d_model": 16, "d_ff": 32, "block_size": 16}
TEMPLATE = {"batch_size": 4, "warmup_steps": 2, "eval_windows": 8}


def _config(**fields) -> DistillConfig:
    return build(DistillConfig, {"model": TINY, "budget": 3_000, "train": TEMPLATE} | fields)


def test_single_model_is_searched_over_the_students_span_cap_and_walk(store):
    config = _config(
        search={
            "grid": {"lr": [3e-3, 1e-2, 3e-2], "weight_decay": [0.1, 0.4, 1.6], "epochs": [8, 16, 32]},
            "start": {"lr": 1e-2, "weight_decay": 0.4, "epochs": 16},
            "max_runs": 50,
        },
        student={
            "grid": {"epochs": [16, 64, 256], "weight_decay": [0.1, 0.8], "lr_scale": [0.3, 1, 10]},
            "max_runs": 9,
            "walk": "lines",
        },
    )
    grid = single_grid(config)
    assert grid.epochs == [8, 16, 32, 64, 256] and grid.weight_decay == [0.1, 0.4, 0.8, 1.6]
    assert grid.lr == [3e-3, 1e-2, 3e-2, 0.1]  # 0.01 x 0.3 is the grid's 0.003, not a float next to it
    d = single_descent(
        config, store, DataRef(rel="data/x", uri="", n_train=0, n_val=0, source_sha256=""), None
    )
    assert d.cd.grid == grid and d.cd.max_runs == 9 and d.cd.walk == "lines"
    unmatched = _config(search=config.search.model_dump(), baseline={"match_students": False})
    assert single_grid(unmatched) == config.search.grid


def test_next_value_steps_by_the_edge_ratio_or_difference_and_stops_at_the_limit():
    assert next_value([8, 16, 32], True, (1, 512), linear=False) == 64
    assert next_value([8, 16, 32], False, (1, 512), linear=False) == 4
    assert next_value([8, 16, 32], True, (1, 48), linear=False) == 48  # a step past the limit lands on it
    assert next_value([8, 16, 48], True, (1, 48), linear=False) is None  # at the limit: no further
    assert next_value([0.5, 0.75], True, (0, 1), linear=True) == 1.0
    assert next_value([0.5, 0.75], False, (0, 1), linear=True) == 0.25
    assert next_value([0.0, 0.1], False, (0, 6.4), linear=False) is None
    assert next_value([0.1, 0.4], False, (0, 6.4), linear=False) == 0.0  # ratios never reach 0: go there
    assert next_value([0.1, 0.4], False, (0.01, 6.4), linear=False) == 0.025
    assert next_value([0.003, 0.01], True, (0.0003, 0.03), linear=False) == 0.03  # lands on the limit, clean


def _settle(cd, loss, limits) -> list[int]:
    """Run a search to its end, growing its grid, as the flow does; the runs per round."""
    rounds = []
    while True:
        n = 0
        while pending := cd.pending():
            for p in pending:
                cd.record(p, loss(p))
                n += 1
        rounds.append(n)
        if not grow(cd, limits):
            return rounds


def test_a_choice_on_an_edge_grows_the_grid_until_interior():
    grid = StudentGrid(epochs=[1, 2, 4], weight_decay=[0.1, 0.4], lr_scale=[0.3, 1, 3])
    start = StudentPoint(epochs=2, weight_decay=0.1, synthetic=1.0, mix=0.5, alpha=1.0, lr_scale=1)
    axes = ("epochs", "weight_decay", "lr_scale")

    def loss(p: StudentPoint) -> float:  # best at 32 epochs and 10x the rate: past the grid's top on both
        return (math.log2(p.epochs) - 5) ** 2 + (math.log10(p.lr_scale) - 1) ** 2 + p.weight_decay

    limits = {"epochs": (0.5, 512), "weight_decay": (0, 6.4), "lr_scale": (0.03, 30)}
    for walk in ("neighbourhood", "lines"):
        cd = StudentDescent(grid, axes, start, walk=walk)
        _settle(cd, loss, lambda axis, values: limits[axis])
        assert cd.best() == StudentPoint(32, 0.0, 1.0, 0.5, 1.0, 9) and cd.certified, walk
        assert cd.grid.epochs == [1, 2, 4, 8, 16, 32, 64] and cd.grid.lr_scale == [0.3, 1, 3, 9, 27]
        assert cd.grid.weight_decay == [0.0, 0.1, 0.4]
        assert settled_edges(cd) == ["weight_decay"]  # 0 is its hard limit: on the edge, and reported
    # A hard limit stops the growth: the choice stays on the edge and is reported there.
    capped = StudentDescent(grid, axes, start)
    _settle(capped, loss, lambda axis, values: {**limits, "epochs": (0.5, 8)}[axis])
    assert capped.best().epochs == 8 and "epochs" in settled_edges(capped) and capped.grid.epochs[-1] == 8


def test_the_single_models_search_grows_too():
    grid = SearchGrid(lr=[1e-2, 3e-2], weight_decay=[0.1, 0.4], epochs=[8, 16])
    cd = CoordinateDescent(grid, ("epochs", "lr", "weight_decay"), Point(1e-2, 0.4, 8))
    loss = lambda p: abs(math.log2(p.epochs) - 6) + abs(math.log10(p.lr) + 2) + abs(p.weight_decay - 0.4)  # noqa: E731
    _settle(
        cd, loss, lambda axis, values: {"lr": (1e-3, 0.3), "epochs": (1, 64), "weight_decay": (0, 6.4)}[axis]
    )
    assert cd.best() == Point(1e-2, 0.4, 64) and cd.grid.epochs == [8, 16, 32, 64]
    assert cd.grid.lr[0] == pytest.approx(1e-2 / 3) and cd.grid.weight_decay == [0.1, 0.4, 1.6]
    assert settled_edges(cd) == ["epochs"]


def test_seeds_control_and_offset_shape_the_runs(store):
    config = _config(student={"grid": {"epochs": [1, 2], "synthetic": [1.0]}}, seeds=3)
    data = DataRef(rel="data/x", uri="", n_train=0, n_val=0, source_sha256="")
    synthetic = DataRef(rel="data/s", uri="", n_train=0, n_val=0, source_sha256="")
    teachers = Teachers(single="runs/s", members=["runs/a", "runs/b"], trained_here=True)
    point = StudentPoint(epochs=2, weight_decay=0.1, synthetic=1.0, mix=0.5, alpha=1.0, lr_scale=3)
    seeds = [config.replica_seed(r) for r in range(config.seeds)]
    assert seeds == [0, 100, 200] and not set(seeds[1:]) & {1, 2}  # apart from the members' seeds
    combined = student_job(config, store, data, "combined", point, 1e-3, teachers, synthetic, None, seed=100)
    control = control_job(config, store, data, point, 1e-3, 100, None)
    assert combined.objective["kind"] == "token_kl" and combined.batches["kind"] == "mixture"
    assert (control.objective or {}).get("kind", "ce") == "ce" and (control.batches or {}).get(
        "kind"
    ) != "mixture"
    same = ("epochs", "lr", "weight_decay", "train_seed", "data_seed", "batch_size", "eval_every")
    assert {f: getattr(control.train, f) for f in same} == {f: getattr(combined.train, f) for f in same}
    assert control.train.lr == pytest.approx(3e-3) and control.key != combined.key
    moved = _config(student={"grid": {"epochs": [1, 2], "synthetic": [1.0]}}, seeds=3, seed_offset=1000)
    assert [moved.replica_seed(r) for r in range(3)] == [1000, 1100, 1200]
    searched = student_job(moved, store, data, "sequence", point, 1e-3, teachers, synthetic, None)
    assert searched.train.train_seed == searched.train.data_seed == 1000
    with pytest.raises(ConfigError, match="control"):
        _config(control="telepathy")


def test_sampling_covers_the_synthetic_limit_students_may_grow_to():
    base = {"student": {"grid": {"synthetic": [1.0, 2.0]}}}
    fixed = _config(**base)
    grows = _config(**base, edges={"extend": True, "synthetic": [0.5, 8.0]})
    assert grows.sequences_needed() > 3.5 * fixed.sequences_needed()
    assert _config(**base, edges={"extend": True}).sequences_needed() == fixed.sequences_needed()


def test_intervals_carry_seed_noise():
    rng = np.random.default_rng(0)
    windows = 400
    text = rng.standard_normal(windows) * 0.3  # which text is hard: shared by every model

    def arm(level: float, spread: float, n: int) -> list[np.ndarray]:
        """n seeds: a seed effect of sd `spread`, the shared text difficulty, a little window noise."""
        return [
            level + text + spread * rng.standard_normal() + 0.01 * rng.standard_normal(windows)
            for _ in range(n)
        ]

    single, ensemble = arm(3.0, 0.03, 3), arm(2.8, 0.0, 1)
    students = {"sequence": arm(2.9, 0.03, 3)}
    control = arm(2.95, 0.03, 3)
    seeded = retention(single, ensemble, students, n_boot=400, control=control, control_of="sequence")
    one = retention(single[:1], ensemble, {"sequence": students["sequence"][:1]}, n_boot=400)
    width = lambda f: f.ci[1] - f.ci[0]  # noqa: E731
    assert width(seeded.retained_figures["sequence"]) > 2 * width(one.retained_figures["sequence"])
    point = (np.mean(single) - np.mean(students["sequence"])) / (np.mean(single) - np.mean(ensemble))
    assert seeded.retained["sequence"] == pytest.approx(point)
    assert seeded.losses["control"].estimate == pytest.approx(np.mean(control))
    assert "seeds per arm" in seeded.resampled and "windows of one model" in one.resampled
    effect = seeded.teacher_effect
    assert effect.estimate == pytest.approx(np.mean(control) - np.mean(students["sequence"]))
    assert set(seeded.retained_figures) == {"sequence", "control"}
    for f in [*seeded.losses.values(), *seeded.retained_figures.values(), effect]:
        assert 0.5 <= f.p_direction <= 1 and f.ci[0] <= f.ci[1]


def test_the_bench_protocol_is_complete_and_builds(tmp_path):
    protocol = json.loads((ROOT / "bench/protocols/distill.json").read_text())
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import distill as bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    cfg = bench.config_from(protocol, "builtin:python-docs", str(tmp_path), 7)
    assert cfg.seeds >= 3 and cfg.seed_offset == 7 and cfg.control == "combined" and cfg.edges.extend
    assert cfg.baseline.match_students and cfg.ensemble.members == 8
    assert set(cfg.student.methods) == {"sequence", "token_kl", "combined"}
    assert max(single_grid(cfg).epochs) == max(cfg.student.grid.epochs)


def test_the_ensembles_member_noise_enters_as_jackknife_pseudo_seeds():
    rng = np.random.default_rng(1)
    full = 2.0 + 0.3 * rng.standard_normal(200)
    loo = [full + 0.02 * rng.standard_normal() + 0.005 * rng.standard_normal(200) for _ in range(6)]
    pseudo = member_pseudo_seeds(full, loo)
    assert len(pseudo) == 6 and np.allclose(np.mean(pseudo, 0), full)  # its mean: the ensemble's own loss
    means = np.array([x.mean() for x in loo])
    jackknife = (6 - 1) / 6 * ((means - means.mean()) ** 2).sum()
    assert np.var([p.mean() for p in pseudo], ddof=1) / 6 == pytest.approx(jackknife)
    assert len(member_pseudo_seeds(full, [])) == 1 and np.array_equal(member_pseudo_seeds(full, [])[0], full)
    assert leave_one_out(["a", "b"]) == [] and leave_one_out(["a", "b", "c"]) == [
        ["b", "c"],
        ["a", "c"],
        ["a", "b"],
    ]
    single = [full + 0.3 for _ in range(3)]
    wider = retention(single, pseudo, {"s": [full + 0.15]}, n_boot=400)
    narrow = retention(single, [full], {"s": [full + 0.15]}, n_boot=400)
    assert wider.gain_ci[1] - wider.gain_ci[0] > narrow.gain_ci[1] - narrow.gain_ci[0]
