"""AutoLRS, Ray Tune and Optuna searches."""

import asymptote.infra  # noqa: F401  (Prefect and Ray settings, before either is imported)
