"""The fault matrix's cells as tests (bench/faults.py): each asserts its cell's promise.

Real CLI processes on real local Ray and one real Prefect API for the module; the uninterrupted run
is shared by every cell. The suite runs the cells that keep it short and that hold today; the bench
runs every cell. Cells not built yet (a node of a two-node cluster killed, an S3 outage) are listed in
bench/faults.py's NOT_RUN and reported there, not pretended here. Known open: a corrupt committed
weights file or token shard fails with the right one-line error but Prefect's own task-failure logs
still print a traceback first, so those cells are not yet promised here.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, corpus_path):
    """(faults module, context with the reference run, watcher), set up once."""
    sys.path.append(str(BENCH))
    import faults
    from prefect.testing.utilities import prefect_test_harness

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


def _promise(row: dict, steps_lost: float = 1) -> None:
    assert row["survived"], row
    assert row["steps_lost"] <= steps_lost, row
    assert row["loss_diff"] == 0, row
    assert row["unverified"] == 0 and row["committed_lost"] == 0 and row["double_runs"] == 0, row


@pytest.mark.parametrize("name", ["worker_killed", "node_killed", "flow_killed", "checkpoint_corrupt"])
def test_cell(matrix, name):
    faults, ctx, w = matrix
    _promise(faults.CELLS[name](ctx, w))


def test_two_identical_flows_at_once_train_once(matrix):
    faults, ctx, w = matrix
    _promise(faults.cell_two_at_once(ctx, w))
