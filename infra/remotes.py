"""Ray remote functions and actors made on first use.

Task modules define plain functions and classes and wrap them here when a task body first needs
them, so that importing a task module (every flow does) does not import Ray: a call whose every step
is cached answers from the store without it.
"""

from __future__ import annotations

from typing import Any

_MADE: dict[tuple, Any] = {}


def remote(target, **options):
    """`ray.remote(**options)(target)`, made once per process and options."""
    import ray

    key = (target, tuple(sorted(options.items())))
    if key not in _MADE:
        _MADE[key] = ray.remote(**options)(target) if options else ray.remote(target)
    return _MADE[key]
