"""Cache locks: a holder that dies (SIGKILL) never blocks the step; a live holder does."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

HOLDER = """
import sys, time
from pathlib import Path
from asymptote.infra.locks import CrashSafeFileLockManager, redis_lock_manager
kind, where = sys.argv[1], sys.argv[2]
m = CrashSafeFileLockManager(Path(where)) if kind == "file" else redis_lock_manager(where, lease_s=2.0)
assert m.acquire_lock("step-key", holder="holder-a")
print("held", flush=True)
time.sleep(120)
"""


def _hold(kind: str, where: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, where], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _manager(kind: str, where: str):
    from pathlib import Path

    from asymptote.infra.locks import CrashSafeFileLockManager, redis_lock_manager

    return CrashSafeFileLockManager(Path(where)) if kind == "file" else redis_lock_manager(where, lease_s=2.0)


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_dead_holder_releases_live_holder_blocks(kind, tmp_path, request):
    where = str(tmp_path / "locks") if kind == "file" else request.getfixturevalue("redis_url")
    holder = _hold(kind, where)
    me = _manager(kind, where)
    try:
        time.sleep(3)  # longer than the Redis lease: only renewal keeps a live holder's lock
        assert me.is_locked("step-key")
        assert not me.acquire_lock("step-key", holder="holder-b", acquire_timeout=1)
    finally:
        holder.kill()
        holder.wait()
    assert me.acquire_lock("step-key", holder="holder-b", acquire_timeout=10)
    assert me.is_lock_holder("step-key", "holder-b")
    me.release_lock("step-key", "holder-b")
    assert not me.is_locked("step-key")
