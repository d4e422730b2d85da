"""Prefect caching over the artifact store: results, cache keys and locks where every machine sees them.

- Cache key: computed by our own code from what can change a result (config without volatile
  fields, content-addressed input artifacts, code version) and passed to the task as `key`.
- Results and keys: persisted under <store>/prefect/ (a LocalFileSystem or RemoteFileSystem block).
- Isolation: SERIALIZABLE with a lock, so two callers of the same step compute it once. The lock is a
  file lock (one machine) unless a Redis URL is configured (store.redis_url, default $ASYMPTOTE_REDIS_URL),
  which every machine of a cluster can reach.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy

from asymptote.infra.locks import CrashSafeFileLockManager, redis_lock_manager
from asymptote.infra.results import result_storage
from asymptote.store import IntegrityError, Store, cache_dir


@dataclass
class StepKey(CachePolicy):
    """The cache key is the task's `key` argument, prefixed by the task name."""

    def compute_key(
        self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs
    ) -> str | None:
        key = inputs.get("key")
        return f"{task_ctx.task.name}-{key}" if key else None


def lock_manager(store: Store):
    """Redis (leased) when a URL is configured, else a file lock on this machine; both survive crashes."""
    if store.cfg.redis_url:  # the lease: how long a dead holder blocks its step (a live one renews it)
        return redis_lock_manager(store.cfg.redis_url, lease_s=store.cfg.lock_lease_s)
    folder = Path(store.path("prefect", "locks")) if store.is_local else cache_dir(store.cfg) / "locks"
    return CrashSafeFileLockManager(lock_files_directory=folder)


_CONFIGURED: dict[str, dict[str, Any]] = {}


def cache_options(store: Store) -> dict[str, Any]:
    """Options for `task.with_options(...)` that make a step cached in this store."""
    from prefect.settings import get_current_settings

    # Blocks live in one Prefect database: configure again when the process talks to another API.
    uri = f"{store.uri()}|{get_current_settings().api.url}"
    if uri not in _CONFIGURED:
        policy = StepKey().configure(
            key_storage=result_storage(store, "keys"),
            lock_manager=lock_manager(store),
            isolation_level="SERIALIZABLE",
        )
        _CONFIGURED[uri] = {
            "cache_policy": policy,
            "result_storage": result_storage(store),
            "persist_result": True,
        }
    return _CONFIGURED[uri]


def check_recompute(recompute: list[str], steps) -> set[str]:
    """The steps a flow was asked to recompute, refusing names that are not among its steps."""
    unknown = set(recompute) - set(steps)
    if unknown:
        raise ValueError(f"recompute={sorted(unknown)}: unknown steps; allowed: {', '.join(steps)}")
    return set(recompute)


# Errors that the same call would raise again: a retry only delays the message by its backoff.
DETERMINISTIC = (ValueError, TypeError, KeyError, FileNotFoundError, PermissionError, IntegrityError)
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def deterministic(exc: BaseException | None) -> bool:
    """Bad input, a corrupt artifact, a full or read-only disk: none of these goes away on retry.
    (Ray re-raises a task's error as a subclass of its type, so isinstance sees through Ray.)"""
    while exc is not None:
        if isinstance(exc, DETERMINISTIC) or getattr(exc, "errno", None) in FULL_DISK:
            return True
        exc = exc.__cause__
    return False


def retry_transient(task, task_run, state) -> bool:
    """Prefect's retry_condition_fn: retry a step only when its failure may be transient."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as err:  # noqa: BLE001 - the failure is what we inspect
            exc = err
    return not deterministic(exc)


def cached(task, store: Store, refresh: bool = False):
    """The task, cached in the store; refresh=True recomputes it and overwrites the cached result.
    Only transient failures are retried (see `retry_transient`)."""
    return task.with_options(
        **cache_options(store), refresh_cache=refresh or None, retry_condition_fn=retry_transient
    )


def run_cached(
    task, store: Store, *args, refresh: bool = False, states: dict[str, str] | None = None, **kwargs
):
    """Call the cached task and return its value; record its final state name (Completed, Cached) in states."""
    state = cached(task, store, refresh)(*args, return_state=True, **kwargs)
    if states is not None:
        states[task.name] = state.name
    return state.result()
