"""bench/soups.py's analysis: gains pooled over bases (paired as seeds), fields of its JSON line, and its
headline in the README's results table. The studies themselves are synthetic: no training here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_modules

from asymptote.refs import DataRef
from asymptote.soups_config import FineTune, SoupEntry, SoupStudyResult

BENCH = Path(__file__).resolve().parents[1] / "bench"
PROTOCOL = json.loads((BENCH / "protocols" / "soups.json").read_text())


@pytest.fixture(scope="module")
def bench():
    yield from bench_modules("soups", "render_results")


def study(rng, offset: float, gain: float) -> SoupStudyResult:
    """One base: two fine-tunes (ft-0 best on held-out) and a greedy soup `gain` below ft-0 on every window."""
    windows = rng.normal(2.0, 0.2, 80) + offset
    ood = rng.normal(3.0, 0.2, 40) + offset
    losses = {"a": windows, "b": windows + 0.02, "greedy": windows - gain}

    def entry(name, kind, held, **extra):
        w = losses[name]
        return SoupEntry(
            name=name, kind=kind, heldout=held, test=float(w.mean()), rel=name, test_windows=w.tolist(),
            ood_test=float(ood.mean()), ood_windows=ood.tolist(), **extra,
        )  # fmt: skip

    finetunes = [
        FineTune(run={"rel": n, "uri": n, "weights_uri": n, "key": n, "name": n}, hparams={}) for n in "ab"
    ]
    data = DataRef(rel="data/x", uri="file:///x", n_train=1, n_val=1, source_sha256="0")
    entries = [entry("a", "ingredient", 1.0), entry("b", "ingredient", 1.1)]
    entries.append(entry("greedy", "soup", 0.9, weights={"a": 0.5, "b": 0.5}))
    return SoupStudyResult(
        flow_run_id=None, data=data, base=f"runs/base{offset}", finetunes=finetunes, entries=entries,
        report_uri="", split="test", ood_split="test",
    )  # fmt: skip


def test_protocol_has_three_bases_and_builds_each_bases_config(bench):
    soups, _ = bench
    assert len(PROTOCOL["bases"]) >= 3
    cfgs = [
        soups.base_config(PROTOCOL, s + 10, 10, ("/p.txt", "/t.txt"), "/tmp/s") for s in PROTOCOL["bases"]
    ]
    assert [c.base.train.train_seed for c in cfgs] == [10, 11, 12] == [c.sweep.seed for c in cfgs]
    assert {c.independent.train.train_seed for c in cfgs} == {10}  # the members are shared by every base
    assert {c.data.source for c in cfgs} == {"/t.txt"} and {c.base.data.source for c in cfgs} == {"/p.txt"}


def test_summary_pools_greedy_over_bases_with_its_interval(bench):
    soups, render_results = bench
    rng = np.random.default_rng(0)
    results = [study(rng, offset, gain) for offset, gain in ((0.0, 0.010), (0.3, 0.012), (-0.2, 0.011))]
    out = soups.summarize(PROTOCOL, [0, 1, 2], results)
    g = out["greedy_gain"]
    assert out["bases"] == 3 and out["split"] == "test" and out["ood_split"] == "test"
    assert set(g) == {"estimate", "ci", "p_direction", "resampled", "verdict"}
    assert g["estimate"] == pytest.approx(0.011, abs=1e-4) and g["ci"][0] <= g["estimate"] <= g["ci"][1]
    assert g["resampled"] == "3 seeds per arm, then 80 test windows"
    assert out["goals"]["greedy_beats_best_ci_above_0"] == (g["ci"][0] > 0)
    assert out["greedy_ingredients"] == [["ft-0", "ft-1"]] * 3
    assert out["ood_gain_over_best"]["greedy"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    figure, interval = render_results.HEADLINES["soups"](out)
    assert "pooled over 3 bases" in figure and "3 seeds per arm" in interval


def test_gains_differing_by_base_widen_the_pooled_interval(bench):
    soups, _ = bench
    rng = np.random.default_rng(1)
    steady = [study(rng, 0.0, 0.01) for _ in range(3)]
    spread = [study(rng, 0.0, g) for g in (-0.01, 0.01, 0.03)]
    width = {
        name: np.diff(soups.summarize(PROTOCOL, [0, 1, 2], rs)["greedy_gain"]["ci"])[0]
        for name, rs in (("steady", steady), ("spread", spread))
    }
    assert width["spread"] > 5 * width["steady"]
