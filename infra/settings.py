"""Prefect and Ray settings, in one place, applied before either library is imported.

Both read their settings from the environment when they are first imported, so these are set by
`asymptote.infra`'s package init, which every orchestration package (flows, tasks, tuning) and the
CLI import first. A variable the user already set wins (setdefault).
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
    ray_imported = "ray" in sys.modules
    for name, value in DEFAULTS.items():
        if not (ray_imported and name in READ_AT_RAY_IMPORT):
            os.environ.setdefault(name, value)
