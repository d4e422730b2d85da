"""Ray, started when first needed: join the cluster named by the config or RAY_ADDRESS, or start a small
local one in-process.

A flow opens a `compute_session`, which starts nothing: the first task that actually needs Ray (a
training launch, an evaluation, a search) calls `ray_ready()`, which starts or joins Ray and the live
progress display for that session. So a call whose every step is a cache hit answers from the store
without starting Ray at all.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from asymptote.infra import settings
from asymptote.infra.progress import hub_name, live_progress

# the default reserves ~30% of RAM in /dev/shm; tiny models need little
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20

VERBOSE = False
"""Whether Ray's own info lines (its start-up line among them) reach the console; `--verbose` sets it."""


def _log_level() -> int:
    return logging.INFO if VERBOSE else logging.WARNING


def cluster_address(configured: str | None = None) -> str | None:
    return configured or os.environ.get("RAY_ADDRESS") or None


def _short_temp_dir() -> str:
    # Ray puts Unix sockets under its temp dir and socket paths are limited to 107 bytes.
    return tempfile.mkdtemp(prefix="ray-", dir="/tmp")


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Use the Ray already initialised in this process, else join `address`, else start a local Ray.

    Only a Ray started here is shut down here; a joined cluster keeps running.
    """
    settings.apply()  # Ray reads some of its settings when imported
    import ray

    if ray.is_initialized():
        yield
        return
    address = cluster_address(address)
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=_log_level())
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=_log_level(),
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            _temp_dir=_short_temp_dir(),
        )
    try:
        yield
    finally:
        ray.shutdown()


def cluster_has_gpus() -> bool:
    import ray

    ray_ready()
    return ray.cluster_resources().get("GPU", 0) > 0


def gpu_if_any() -> dict[str, int]:
    """Ray options placing an evaluation on a GPU when the cluster has one: a full validation pass
    of a GPU-sized model on one CPU core would take longer than training it."""
    return {"num_gpus": 1 if cluster_has_gpus() else 0}


@dataclass
class _Session:
    """What a compute session will start on first use, and what it started (closed at its end)."""

    address: str | None
    num_cpus: int | None
    hub: str
    started: bool = False
    stack: ExitStack = field(default_factory=ExitStack)

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.stack.enter_context(ray_session(self.address, self.num_cpus))
            self.stack.enter_context(live_progress(name=self.hub))


_LOCK = threading.Lock()
_SESSION: _Session | None = None  # the outermost open session of this process


def ray_ready() -> None:
    """Make sure Ray (and the session's progress display) runs; call before any use of Ray.

    Prefect runs tasks in threads, so the session is process-wide rather than a context variable."""
    with _LOCK:
        if _SESSION is not None:
            _SESSION.start()
            return
    settings.apply()  # Ray reads some of its settings when imported
    import ray

    if not ray.is_initialized():  # a task called outside any flow: join or start Ray for the process
        ray.init(address=cluster_address() or "local", include_dashboard=False, logging_level=_log_level())


@contextmanager
def compute_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[str]:
    """A session in which Ray and the live progress display start on first use; yields the progress
    hub's name (for TrainJob.progress_hub). Nested sessions (a flow calling another flow) share the
    outer one."""
    global _SESSION
    with _LOCK:
        if _SESSION is not None:
            outer = _SESSION.hub
        else:
            outer, _SESSION = None, _Session(address, num_cpus, hub_name())
            session = _SESSION
    if outer is not None:
        yield outer
        return
    try:
        yield session.hub
    finally:
        with _LOCK:
            _SESSION = None
        session.stack.close()
