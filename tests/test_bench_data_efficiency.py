"""bench/data_efficiency.py end to end on its protocol's smoke settings: one JSON line with every field
the issue names, and every split size as cut from the kept text (nothing chosen on the reported split)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_modules

from asymptote.data_efficiency import keep_fraction, read_single_text

BENCH = Path(__file__).resolve().parents[1] / "bench"
MODELS = ("standard", "single", "ensemble", "student")


@pytest.fixture(scope="module")
def bench():
    yield from bench_modules("data_efficiency")


def reference_case(bench, reference_loss):
    """Two models and the measured reference arm, paired over 4 windows x 3 seeds: `close` is 0.01
    better than the reference on every window, with seeds 0.05 apart (not resolved); `far` 0.2 better."""
    rng = np.random.default_rng(0)
    windows = rng.normal(2.0, 0.1, 4)
    seeds = [-0.05, 0.0, 0.05]
    arms = {
        bench.REFERENCE_ARM: [windows + s for s in seeds],
        "close": [windows - 0.01 + s for s in seeds[::-1]],
        "far": [windows - 0.2 + s for s in seeds],
    }
    plan = {"reference_loss": reference_loss, "analysis": {"level": 0.95}}
    figs, draws = bench.loss_figures(arms, n_boot=500)
    return bench.reference_figures(plan, figs, draws, ["close", "far"])


def test_a_measured_reference_is_beaten_only_when_the_paired_draws_say_so(bench):
    beats, reference = reference_case(bench, None)
    assert beats == {"close": False, "far": True}
    assert reference["ci"][0] <= reference["loss"] <= reference["ci"][1]
    assert "measured in this run" in reference["from"]


def test_a_given_reference_is_beaten_by_the_whole_interval(bench):
    beats, reference = reference_case(bench, 1.95)  # between far (~1.8) and close (~1.99)
    assert reference["loss"] == 1.95 and beats == {"close": False, "far": True}


@pytest.mark.slow
def test_the_smoke_bench_prints_every_figure_with_splits_cut_from_the_kept_text(tmp_path):
    data, fraction = "builtin:python-docs", 0.02
    cmd = [sys.executable, str(BENCH / "data_efficiency.py"), "--data", data, "--fraction", str(fraction)]
    # a corpus without nanoGPT's figure: the reference is measured on all of the text in the same run
    measured = ["--set", "reference_loss=null", "--set", "law.fractions=[0.01, 0.02, 0.04, 1.0]"]
    done = subprocess.run(
        [*cmd, "--smoke", *measured, "--store", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    protocol = json.loads((BENCH / "protocols" / "data_efficiency.json").read_text())

    # the figures, each a test loss on the reported split with its interval
    assert out["split"] == "nanogpt_val" and out["fraction"] == fraction and out["smoke"] is True
    for m in MODELS:
        lo, hi = out[m]["ci"]
        assert lo <= out[m]["estimate"] <= hi
        assert isinstance(out["beats_nanogpt"][m], bool) and out["params"][m] > 0
        assert out["total_train_tokens"][m] > 0 and out["seeds"][m] >= 2
        assert set(out["data_multiplier"][m]) == {"estimate", "ci", "reachable", "reason"}
    assert set(out["extensions"]) == {"token_kl", "combined"} and out["paper_method"] == "sequence"
    assert out["params"]["ensemble"] == out["seeds"]["ensemble"] * out["params"]["single"]
    law = out["law"]
    assert {"A", "alpha", "E", "identified", "reason"} <= set(law) and len(law["points"]) == 4
    if not law["identified"]:  # the smoke's law may not be: then no multiplier, and the reason
        assert law["reason"] and all(out["data_multiplier"][m]["estimate"] is None for m in MODELS)
    assert len(out["protocol"]) == 16 and out["commit"] and out["wall_s"] > 0
    ref = out["reference"]  # measured here: the standard arm's settings on all of the training text
    assert "measured" in ref["from"] and ref["ci"][0] <= ref["loss"] == out["nanogpt_loss"] <= ref["ci"][1]

    # every split the flows read is the one cut here: training and validation from the kept text only
    text, val_share = read_single_text(data), protocol["split"]["val_share"]
    here = keep_fraction(text, fraction, val_share)
    assert out["unique_train_tokens"] == len(here.train)
    assert out["validation"] == {"slice_tokens": len(here.val), "flows_val_tokens": len(here.val)}
    assert out["reported_tokens"] == {"as_cut": len(here.reported), "flows_test_tokens": len(here.reported)}
    for point in law["points"]:
        cut = keep_fraction(text, point["fraction"], val_share)
        assert (point["tokens"], point["val_tokens"]) == (len(cut.train), len(cut.val))
