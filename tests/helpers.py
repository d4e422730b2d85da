"""Small builders shared by tests."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_modules(*names: str) -> Iterator[ModuleType | tuple[ModuleType, ...]]:
    """A module fixture's body: the scripts of bench/ (not a package) imported, bench/ on sys.path
    while the fixture lives (a script may import its neighbours when called), then taken off."""
    sys.path.insert(0, str(BENCH))
    try:
        modules = tuple(importlib.import_module(n) for n in names)
        yield modules[0] if len(modules) == 1 else modules
    finally:
        sys.path.remove(str(BENCH))


def tiny_pretrain_config(store_uri: str, source: str = "builtin:python-docs", **train):
    """A pretrain config that trains in a couple of seconds on one CPU."""
    from asymptote.config import PretrainConfig

    train = {
        "max_steps": 30,
        "batch_size": 8,
        "warmup_steps": 5,
        "eval_every": 15,
        "log_every": 5,
        "checkpoint_every": 10,
        "eval_windows": 32,
        "lr": 3e-3,
    } | train
    return PretrainConfig.model_validate(
        {
            "name": "tiny",
            "model": {"preset": "cpu-0.1m"},
            "data": {"source": source, "max_train_tokens": 100_000},
            "train": train,
            "store": {"uri": store_uri},
        }
    )


def task_runs(flow_run_id, timeout: float = 90.0, expect: tuple[str, ...] = ()) -> list:
    """The task runs of one flow run, read back from the Prefect API once every state is final.

    Prefect records task-run states asynchronously, so a flow that answers fast (every step cached, no
    Ray to start) can return before its tasks' runs and last states reach the API: read until two
    reads a second apart find the same runs, none pending or running, and every task named in `expect`
    (a run's name without its "-<suffix>") among them, or the timeout passes. Two agreeing reads alone
    once returned before the flow's last task run had been recorded."""
    import time
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    # Task runs reach the API as events sent from a background worker: send what is queued first.
    EventsWorker.drain_all(timeout=timeout)
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(str(flow_run_id))]))
    deadline, seen = time.monotonic() + timeout, -1
    with get_client(sync_client=True) as client:
        while True:
            runs = _all_task_runs(client, flow_filter)
            names = {task_name(r) for r in runs}
            settled = bool(runs) and all(r.state is not None and r.state.is_final() for r in runs)
            settled = settled and set(expect) <= names
            # the runs themselves are recorded asynchronously too: settled twice with the same count
            if (settled and len(runs) == seen) or time.monotonic() > deadline:
                return runs
            seen = len(runs) if settled else -1
            time.sleep(1.0)


PRETRAIN_TASKS = ("prepare-data", "train", "evaluate")


def task_name(run) -> str:
    """A task run's task: its name without Prefect's "-<suffix>"."""
    return run.name.rsplit("-", 1)[0]


def pretrain_task_states(flow_run_id) -> dict[str, str]:
    """Task -> state name of one pretrain flow run, once all three of its tasks are recorded."""
    return {task_name(r): r.state.name for r in task_runs(flow_run_id, expect=PRETRAIN_TASKS)}


def _all_task_runs(client, flow_filter, page: int = 200) -> list:
    """Every task run of the filter, page by page (the API serves at most 200 at a time)."""
    runs: list = []
    while True:
        batch = client.read_task_runs(flow_run_filter=flow_filter, limit=page, offset=len(runs))
        runs += batch
        if len(batch) < page:
            return runs
