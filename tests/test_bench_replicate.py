"""bench/replicate.py and the AutoLRS bench it drives: figures found at any depth, coverage judged
per figure, and a real replicate of a tiny AutoLRS protocol with fresh seeds into a fresh store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import bench_modules

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def replicate():
    yield from bench_modules("replicate")


def test_figures_are_found_at_any_depth_with_their_path(replicate):
    result = {
        "grid": {"estimate": 1.9, "ci": [1.8, 2.0], "lr": 1e-3},
        "runs": [{"estimate": 2.0, "ci": [1.9, 2.1]}],
        "retained": {"sequence": {"estimate": 0.6, "ci": [0.5, 0.7], "p_direction": 1.0}},
        "seeds": 3,
        "not_a_figure": {"estimate": 1.0},
    }
    assert dict(replicate.figures(result)) == {
        "grid": result["grid"],
        "runs[0]": result["runs"][0],
        "retained.sequence": result["retained"]["sequence"],
    }


def test_coverage_marks_each_figure_and_skips_what_only_one_run_has(replicate):
    first = {"a": {"estimate": 1.0, "ci": [0.9, 1.1]}, "b": {"estimate": 2.0, "ci": [1.9, 2.1]}}
    first["only_first"] = {"estimate": 0.0, "ci": [-1, 1]}
    second = {"a": {"estimate": 1.05, "ci": [1.0, 1.1]}, "b": {"estimate": 2.3, "ci": [2.2, 2.4]}}
    rows = replicate.coverage(first, second)
    assert set(rows) == {"a", "b"}
    assert rows["a"]["covered"] and not rows["b"]["covered"]
    assert rows["b"]["first_ci"] == [1.9, 2.1] and rows["b"]["replicate"] == 2.3


def test_last_json_reads_a_bench_line_or_a_saved_result(replicate):
    assert replicate.last_json('log line\n{"x": 1}\n') == {"x": 1}
    saved = json.dumps({"bench": "soups", "result": {"x": 2}})
    assert replicate.last_json(saved) == {"x": 2}
    indented = json.dumps({"bench": "soups", "result": {"x": 3}}, indent=1)  # as common.save_result writes
    assert replicate.last_json(indented) == {"x": 3}
    with pytest.raises(ValueError, match="no JSON"):
        replicate.last_json("nothing here\n")


TINY = {
    "model": "baby",
    "train": {"batch_size": 4, "steps": 30, "warmup": 5, "floor": 0.1, "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0},
    "user_lr": 0.001,
    "grid_factors": [0.1, 1.0, 10.0],
    "misset_factors": [0.1, 10.0],
    "seeds": [0, 1],
    "test_fraction": 0.02,
    "val_windows": 8,
    "eval_every": 10,
    "autolrs": {"trials": 2, "trial_steps": 5, "stage_steps": 10, "max_stage_steps": 10, "val_points": 5},
    "analysis": {"n_boot": 200, "level": 0.95, "goal_margin_nats": 0.02, "goal_step_share": 0.5},
}  # fmt: skip


@pytest.mark.slow
def test_replicate_reruns_the_autolrs_bench_with_fresh_seeds(tmp_path, corpus_path):
    protocol, corpus = tmp_path / "tiny.json", tmp_path / "corpus.txt"
    protocol.write_text(json.dumps(TINY))
    corpus.write_bytes(Path(corpus_path).read_bytes()[:150_000])
    cmd = [sys.executable, str(BENCH / "replicate.py"), "autolrs", "--data", str(corpus)]
    cmd += ["--seed-offset", "7", "--protocol", str(protocol), "--workers", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["bench"] == "autolrs" and out["seed_offset"] == 7 and out["protocol"]
    # every headline figure of the AutoLRS bench was compared, each with a verdict
    assert {"grid", "published_default", "misset.x0.1", "autolrs_from_misset.x10"} <= set(out["figures"])
    assert out["total"] == len(out["figures"]) and out["covered"] == sum(
        r["covered"] for r in out["figures"].values()
    )
    assert "seed 7" in done.stderr and "seed 8" in done.stderr  # the replicate trained fresh seeds
