"""Prefect tasks (retried, cached in the store) and the Ray jobs they launch."""
