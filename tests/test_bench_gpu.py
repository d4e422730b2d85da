"""bench/gpu.py: its CPU path end to end (as CI runs it), the peak table and the rate arithmetic."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import bench_modules

BENCH = Path(__file__).resolve().parents[1] / "bench"
KEYS = ["device", "preset", "params", "tokens_per_s", "bare_tokens_per_s", "ratio", "mfu", "peak_mem_gb"]
KEYS += ["compiled", "wall_s"]
POSITIVE = ["params", "tokens_per_s", "bare_tokens_per_s", "ratio", "step_ratio", "mfu", "peak_mem_gb"]
POSITIVE += ["bare_peak_mem_gb", "flops_per_token", "wall_s"]


@pytest.fixture(scope="module")
def gpu_bench():
    yield from bench_modules("gpu")


@pytest.mark.slow
def test_cpu_path_prints_every_figure(tmp_path):
    cmd = [sys.executable, "gpu.py", "--data", "builtin:python-docs", "--store", str(tmp_path)]
    cmd += ["--peak-tflops", "0.5", "--deadline-s", "300"]
    proc = subprocess.run(cmd, cwd=BENCH, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(k in out for k in KEYS), sorted(out)
    for k in POSITIVE:
        assert isinstance(out[k], (int, float)) and math.isfinite(out[k]) and out[k] > 0, (k, out[k])
    assert out["errors"] == [] and out["skipped"] == [], (out["errors"], out["skipped"])
    assert out["preset"] == "cpu-0.1m" and out["compiled"] is False and out["device"].startswith("cpu")
    assert out["ratio"] == pytest.approx(out["tokens_per_s"] / out["bare_tokens_per_s"])
    assert out["mfu"] == pytest.approx(out["tokens_per_s"] * out["flops_per_token"] / 0.5e12)
    assert out["ddp_ranks_identical"] is True and math.isfinite(out["ddp_train_loss"])
    run = out["runs"][0]
    assert run["bare"]["steps"] == run["project"]["steps"] == 12  # the same measured steps side by side


def test_peak_table_reads_device_names(gpu_bench):
    assert gpu_bench.peak_for_name("NVIDIA H200") == 989.0
    assert gpu_bench.peak_for_name("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_bench.peak_for_name("NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.peak_for_name("NVIDIA L40S") == 362.0 and gpu_bench.peak_for_name("NVIDIA L4") == 121.0
    assert gpu_bench.peak_for_name("Some Future GPU") is None


def test_steady_rates_from_the_projects_records(gpu_bench):
    # Reports every 10 steps of 1000 tokens; steps take 0.5 s each window, a 1 s pause after step 20.
    rec = [
        {"step": 10, "tokens": 10_000, "elapsed_s": 9.0, "tok_per_s": 500.0},  # warm-up: not counted
        {"step": 20, "tokens": 20_000, "elapsed_s": 14.0, "tok_per_s": 2000.0},
        {"step": 30, "tokens": 30_000, "elapsed_s": 20.0, "tok_per_s": 2000.0},
        {"step": 40, "tokens": 40_000, "elapsed_s": 25.0, "tok_per_s": 2000.0},
    ]
    whole, in_steps = gpu_bench.steady_rates(rec, warmup=20)
    assert whole == pytest.approx(20_000 / 11.0) and in_steps == pytest.approx(2000.0)
