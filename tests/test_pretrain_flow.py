"""The pretrain flow end to end on real local Ray and a real Prefect API: DDP, caching, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import pretrain_task_states, tiny_pretrain_config

from asymptote.flows.pretraining import pretrain


def test_flow_trains_evaluates_and_reports(ray_local, prefect_api, store_uri, store, capfd):
    res = pretrain(tiny_pretrain_config(store_uri))
    progress = capfd.readouterr().err  # workers report to the driver's display: plain lines off a terminal
    assert "tiny: step 30/30  loss " in progress and "tok/s" in progress, progress[-2000:]
    summary = store.read_json(res.run.rel, "summary.json")
    assert summary["steps"] == 30 and summary["world_size"] == 1
    assert res.metrics["val_loss"] == pytest.approx(summary["val_loss"], rel=1e-6)
    assert res.metrics["val_loss"] < 5.0  # from ln(256) = 5.55 at init
    names = set(store.manifest(res.run.rel).files)
    assert {"model.safetensors", "config.json", "metrics.jsonl", "loss.png", "summary.json"} <= names
    config = json.loads(store.read(res.run.rel, "config.json"))
    assert config["train"]["max_steps"] == 30 and "code_version" in config
    assert res.report_uri.endswith("report.md") and res.flow_run_id

    # A second identical call is a cache hit: Prefect never runs the train task, so no Ray job starts.
    created = store.manifest(res.run.rel).created
    again = pretrain(tiny_pretrain_config(store_uri))
    assert again.run == res.run and again.metrics == res.metrics
    states = pretrain_task_states(again.flow_run_id)
    assert (
        states["train"] == "Cached" and states["prepare-data"] == "Cached" and states["evaluate"] == "Cached"
    )
    assert pretrain_task_states(res.flow_run_id)["train"] == "Completed"
    assert store.manifest(res.run.rel).created == created

    # Changing a volatile field keeps the cache; changing the learning rate does not.
    moved = tiny_pretrain_config(store_uri, log_every=3)
    assert pretrain_task_states(pretrain(moved).flow_run_id)["train"] == "Cached"
    changed = pretrain(tiny_pretrain_config(store_uri, lr=1e-3))
    assert (
        changed.run.key != res.run.key and pretrain_task_states(changed.flow_run_id)["train"] == "Completed"
    )


def test_recompute_forces_one_step(ray_local, prefect_api, store_uri):
    first = pretrain(tiny_pretrain_config(store_uri))
    forced = pretrain(tiny_pretrain_config(store_uri), recompute=["train"])
    states = pretrain_task_states(forced.flow_run_id)
    assert states["train"] == "Completed" and states["prepare-data"] == "Cached"
    assert forced.run.key == first.run.key
    with pytest.raises(ValueError, match="allowed: data, train, evaluate"):
        pretrain(tiny_pretrain_config(store_uri), recompute=["trian"])


@pytest.mark.slow
def test_two_worker_ddp_through_the_flow(ray_local, prefect_api, store_uri, store):
    cfg = tiny_pretrain_config(store_uri)
    cfg.compute.num_workers = 2
    res = pretrain(cfg)
    summary = store.read_json(res.run.rel, "summary.json")
    assert summary["world_size"] == 2 and summary["steps"] == 30
    assert res.metrics["val_loss"] < 5.0
    assert store.exists(f"{res.run.rel}/ray")  # Ray Train's run storage lives in the store


def _wait_for_checkpoint(store, proc, timeout=180) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        found = store.fs.glob(store.path("runs", "*", "checkpoints", "step_*", "MANIFEST.json"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_final_loss(ray_local, prefect_api, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from asymptote.store import Store

    overrides = {"max_steps": 600, "checkpoint_every": 50, "eval_every": 300}
    straight = pretrain(tiny_pretrain_config(str(tmp_path / "a"), **overrides))

    killed_store = Store(str(tmp_path / "b"))
    cmd = [
        sys.executable,
        "-m",
        "asymptote.cli",
        "pretrain",
        "--store",
        killed_store.uri(),
        "--set",
        "name=tiny",
        "--set",
        "model.preset=cpu-0.1m",
        "--set",
        "data.max_train_tokens=100000",
    ]
    cfg = tiny_pretrain_config("x", **overrides)
    cmd += [f"--set=train.{k}={v}" for k, v in cfg.train.model_dump().items() if v is not None]
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        _wait_for_checkpoint(killed_store, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, all at once
        proc.wait()
    assert not killed_store.has(straight.run.rel), "the run finished before it could be killed"

    resumed = pretrain(tiny_pretrain_config(killed_store.uri(), **overrides))
    assert resumed.run.key == straight.run.key
    assert resumed.run.summary["resumed"] is True and straight.run.summary["resumed"] is False
    assert resumed.run.summary["val_loss"] == straight.run.summary["val_loss"]
    assert resumed.run.summary["train_loss"] == straight.run.summary["train_loss"]
