"""Cache locks that a crashed holder cannot leave behind.

Prefect takes a step's lock without a hold timeout, so a holder killed mid-step (OOM, preemption,
Ctrl-C twice) would block that step forever. Both managers here keep Prefect's semantics and add:
- file lock (one machine): a lock whose holder process is gone on this host is stale and removed;
- Redis lock (a cluster): a lease that a background thread renews while the holder lives; a dead
  holder's lease lapses after `lease_s` and another machine takes the step over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

from prefect.locking.filesystem import FileSystemLockManager


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class CrashSafeFileLockManager(FileSystemLockManager):
    """FileSystemLockManager that records its process in each lock and frees locks of dead processes."""

    def acquire_lock(self, key: str, holder: str, acquire_timeout=None, hold_timeout=None) -> bool:
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout)
        if acquired:  # Prefect's holder is an opaque id: add who holds it, so others can tell if it died
            path = self._lock_path_for_key(key)
            info = json.loads(path.read_bytes()) | {"host": socket.gethostname(), "pid": os.getpid()}
            path.write_text(json.dumps(info))
        return acquired

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        info = self._get_lock_info(key, use_cache=use_cache)
        if (
            info is not None
            and info.get("host") == socket.gethostname()
            and not _pid_alive(info.get("pid", -1))
        ):
            Path(info["path"]).unlink(missing_ok=True)
            self._locks.pop(key, None)
            return False
        return super().is_locked(key, use_cache=use_cache)


def redis_lock_manager(url: str, lease_s: float = 60.0):
    """A RedisLockManager whose locks are leases renewed by this process while it holds them."""
    from prefect_redis.locking import RedisLockManager

    class LeasedRedisLockManager(RedisLockManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._renewers: dict[str, threading.Event] = {}

        def __getstate__(self):
            return {k: v for k, v in super().__getstate__().items() if k != "_renewers"}

        def __setstate__(self, state):
            super().__setstate__(state)
            self._renewers = {}

        def acquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None) -> bool:
            acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout or lease_s)
            if acquired and hold_timeout is None and key not in self._renewers:
                self._renewers[key] = self._renew(self._locks[self._lock_name_for_key(key)])
            return acquired

        def release_lock(self, key, holder) -> None:
            stop = self._renewers.pop(key, None)
            if stop is not None:
                stop.set()
            super().release_lock(key, holder)

        @staticmethod
        def _renew(lock) -> threading.Event:
            stop = threading.Event()

            def beat():
                while not stop.wait(lease_s / 3):
                    try:
                        lock.reacquire()  # reset the TTL to the full lease
                    except Exception:  # lost the lock (expired): nothing left to renew
                        return

            threading.Thread(target=beat, daemon=True, name="asymptote-lock-lease").start()
            return stop

    return LeasedRedisLockManager(connection_url=url)
