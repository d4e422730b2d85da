"""The fault matrix's cells as tests (bench/faults.py): each asserts its cell's promise.

Real CLI processes on real Ray (local, or a two-node cluster started by `ray start`), a real S3
server, Redis and one real Prefect API for the module; the uninterrupted run is shared by every cell.
Shorter than the bench in three places, said here: runs of STEPS steps checkpointed every INTERVAL
(the bench: 250 and 25), the S3 outage lasts OUTAGE_S seconds (the bench: 30) and the Redis lease
LEASE_S seconds (the bench: 20).
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench"
OUTAGE_S = 8
LEASE_S = 15
STEPS, INTERVAL = 200, 20


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, corpus_path):
    """(faults module, context with the reference run, watcher), set up once."""
    sys.path.append(str(BENCH))
    import faults
    from prefect.testing.utilities import prefect_test_harness

    faults.OUTAGE_S, faults.LEASE_S = OUTAGE_S, LEASE_S
    faults.scale(STEPS, INTERVAL)
    tmp = tmp_path_factory.mktemp("faults")
    seed = int(os.environ.get("ASYMPTOTE_FAULT_SEED", random.SystemRandom().randrange(2**31)))
    print(f"fault seed {seed}")
    with prefect_test_harness(server_startup_timeout=180), faults.Watcher() as w:
        from prefect.settings import PREFECT_API_URL

        env = dict(os.environ) | {"PREFECT_API_URL": PREFECT_API_URL.value(), "ASYMPTOTE_CACHE": str(tmp)}
        ctx = faults.Ctx(corpus_path, tmp, random.Random(seed), env)
        faults.reference(ctx, w)
        yield faults, ctx, w
        assert not w.seen, f"manifests that did not verify were visible: {sorted(w.seen)}"
        assert not w.errors, f"the watcher could not poll: {w.errors[:5]}"


def _promise(row: dict, steps_lost: float = 1) -> None:
    kept = (
        row["survived"]
        and row["steps_lost"] <= steps_lost
        and row["loss_diff"] == 0
        and row["unverified"] == 0
        and row["committed_lost"] == 0
        and row["double_runs"] == 0
    )
    if not kept:  # the whole row (its note says what happened), not pytest's truncated repr
        pytest.fail(f"promise broken: {json.dumps(row, default=str)}")


@pytest.mark.parametrize(
    "name",
    [
        "worker_killed",
        "node_killed",
        "s3_outage",
        "flow_killed",
        "lock_holder_killed",
        "checkpoint_corrupt",
        "weights_corrupt",
        "shard_corrupt",
        "disk_full",
        "sigint",
    ],
)
def test_cell(matrix, name):
    faults, ctx, w = matrix
    row = faults.CELLS[name](ctx, w)
    if name == "disk_full" and not row["injected"]:
        pytest.skip(row["note"])  # no tmpfs can be mounted here (not root)
    _promise(row)


def test_two_identical_flows_at_once_train_once(matrix):
    faults, ctx, w = matrix
    _promise(faults.cell_two_at_once(ctx, w))
