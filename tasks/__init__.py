"""Prefect tasks (retried, cached in the store) and the Ray jobs they launch."""

import asymptote.infra  # noqa: F401  (Prefect and Ray settings, before either is imported)
