"""Ray: join the cluster named by the config or RAY_ADDRESS, or start a small local one in-process."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

# Set before Ray is imported anywhere in this process.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A Train run whose CPUs never come free retries forever by default: fail with a clear error instead.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
# The controller polls workers every 2 s by default; short runs spend that idle at start and end.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

LOCAL_OBJECT_STORE_BYTES = (
    256 * 2**20
)  # the default reserves ~30% of RAM in /dev/shm; tiny models need little


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
    import ray

    if ray.is_initialized():
        yield
        return
    address = cluster_address(address)
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            _temp_dir=_short_temp_dir(),
        )
    try:
        yield
    finally:
        ray.shutdown()


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def gpu_if_any() -> dict[str, int]:
    """Ray options placing an evaluation on a GPU when the cluster has one: a full validation pass
    of a GPU-sized model on one CPU core would take longer than training it."""
    return {"num_gpus": 1 if cluster_has_gpus() else 0}


@contextmanager
def compute_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[str | None]:
    """Ray (joined or local) plus the live progress display; yields the progress hub's name.

    Nested sessions (a flow calling another flow) reuse the outer Ray and the outer display.
    """
    from asymptote.infra.progress import active_hub, live_progress

    with ray_session(address, num_cpus):
        if active_hub() is not None:
            yield active_hub()
            return
        with live_progress() as hub:
            yield hub
