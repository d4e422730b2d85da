"""Prefect and Ray settings, in one place: `apply()` sets them where a session starts.

Prefect 3 reads its settings from the environment once, when it is imported (its global settings
context and logging are built then), and Ray reads some of its own at import too, so no later hook can
set them: `apply()` is called explicitly at each entry point before either library loads, namely the
CLI's main, the `asymptote.flows` package (the Python API's entry; every flow module imports Prefect)
and the Ray session (`infra.cluster.ray_session` / `ray_ready`), and importing this module sets nothing.
A variable the user already set wins (setdefault), and applying twice changes nothing.
"""

from __future__ import annotations

import os
import sys

DEFAULTS = {
    # Prefect: no telemetry; warnings and errors only; a loaded machine starts the ephemeral API slowly.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # Ray: no usage stats.
    "RAY_USAGE_STATS_ENABLED": "0",
    # Token auth, Ray's default for a local cluster, said explicitly: unset, Ray turns it on and warns
    # about it on every run. A cluster started without auth is joined with RAY_AUTH_MODE=disabled.
    "RAY_AUTH_MODE": "token",
    # A Train run whose CPUs never come free retries forever by default: fail with a clear error instead.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120",
    # The Train controller polls workers every 2 s by default; short runs spend that idle at start and end.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
}


# Ray reads these once, when it is imported; a process that imported Ray before asymptote keeps what
# Ray read then, and its children must agree with it (a local GCS started with token auth from a
# driver that read "disabled" refuses the driver's every call), so they are left alone there.
READ_AT_RAY_IMPORT = ("RAY_AUTH_MODE",)


def apply() -> None:
    """Set each default the environment does not already set (Ray's import-time ones only before Ray)."""
    ray_imported = "ray" in sys.modules
    for name, value in DEFAULTS.items():
        if not (ray_imported and name in READ_AT_RAY_IMPORT):
            os.environ.setdefault(name, value)
