"""A real multi-node Ray cluster and a real S3 server: a step computed by one machine is reused by another.

Processes A, B and C play three machines of a cluster: each has its own PREFECT_HOME (fresh local
state, its own ephemeral Prefect API) and shares nothing with the others but the S3 store and Redis.
One test covers both promises (a step is computed once however many machines start it, and a machine
that comes later reuses it) with three runs, where two tests took four.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import RayCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    env = os.environ | {"RAY_AUTH_MODE": "token"}  # every process of a cluster must agree on auth
    c = RayCluster([{"CPU": 1, "head": 1}, {"CPU": 2, "worker": 1}], env).start()
    try:
        yield c
    finally:
        c.stop()


def _launch(tmp: Path, name: str, cluster: RayCluster, store_cfg, redis_url: str) -> subprocess.Popen:
    home = tmp / f"prefect-{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "PREFECT_HOME": str(home),
        "RAY_ADDRESS": cluster.address,
        "RAY_AUTH_MODE": "token",
        "ASYMPTOTE_REDIS_URL": redis_url,
        "ASYMPTOTE_CACHE": str(tmp / f"cache-{name}"),
    }
    cmd = [
        sys.executable,
        "-m",
        "asymptote.cli",
        "pretrain",
        "--json",
        "--store",
        store_cfg.uri,
        "--set",
        f"store.endpoint_url={store_cfg.endpoint_url}",
        "--set",
        "model.preset=cpu-0.1m",
        "--set",
        "data.max_train_tokens=100000",
        "--set",
        "train.max_steps=40",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.eval_windows=32",
        "--set",
        "train.warmup_steps=5",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_machines_started_at_once_train_once_and_a_later_machine_reuses_every_step(
    cluster, s3_store_cfg, redis_url, tmp_path
):
    # Two machines start the same call at once: the Redis lease lets one train while the other waits
    # and then reads its run from S3.
    procs = [_launch(tmp_path, name, cluster, s3_store_cfg, redis_url) for name in ("a", "b")]
    a, b = (_result(p) for p in procs)
    assert sorted([a["step_states"]["train"], b["step_states"]["train"]]) == ["Cached", "Completed"]
    assert a["run"] == b["run"] and a["data"] == b["data"] and a["metrics"] == b["metrics"]
    assert a["run"]["uri"].startswith("s3://")

    # A third machine, started after both finished, with its own fresh Prefect state, computes nothing.
    c = _result(_launch(tmp_path, "c", cluster, s3_store_cfg, redis_url))
    assert c["step_states"] == {"prepare-data": "Cached", "train": "Cached", "evaluate": "Cached"}
    assert c["run"] == a["run"] and c["data"] == a["data"] and c["metrics"] == a["metrics"]
