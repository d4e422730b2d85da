"""Learning-rate schedules: an explicit registry of name -> factory.

Each factory takes (peak lr, total steps, warmup steps, floor ratio, replay table) and returns
lr(step). `replay` plays back a per-step table, e.g. the schedule AutoLRS found.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

Schedule = Callable[[int], float]


def _warmup(step: int, warmup: int, lr: float) -> float | None:
    return lr * (step + 1) / warmup if step < warmup else None


def cosine(lr: float, total: int, warmup: int, floor: float, table=None) -> Schedule:
    def at(step: int) -> float:
        w = _warmup(step, warmup, lr)
        if w is not None:
            return w
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    return at


def linear(lr: float, total: int, warmup: int, floor: float, table=None) -> Schedule:
    def at(step: int) -> float:
        w = _warmup(step, warmup, lr)
        if w is not None:
            return w
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return lr * (1 - (1 - floor) * progress)

    return at


def constant(lr: float, total: int, warmup: int, floor: float, table=None) -> Schedule:
    return lambda step: _warmup(step, warmup, lr) or lr


def replay(
    lr: float, total: int, warmup: int, floor: float, table: Sequence[float] | None = None
) -> Schedule:
    """Play back a recorded per-step table; past its end, hold the last value."""
    if not table:
        raise ValueError("schedule=replay needs a non-empty table of per-step learning rates")
    values = list(table)
    return lambda step: values[min(step, len(values) - 1)]


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "cosine": cosine,
    "linear": linear,
    "constant": constant,
    "replay": replay,
}


def make_schedule(name: str, lr: float, total: int, warmup: int, floor: float, table=None) -> Schedule:
    return SCHEDULES[name](lr, total, warmup, floor, table)
