"""How students are chosen and judged: a certified search over student settings, and the retained
fraction of the ensemble's gain with a bootstrap interval over test windows. Pure (no torch, Ray, Prefect).

The search is the scaling study's certified coordinate descent (asymptote.scaling.CoordinateDescent)
walking a grid with the student's axes (epochs, weight decay, synthetic amount, mixing weight, KL
weight) instead of (learning rate, weight decay, epochs): every point is a training run judged on
validation, and the best point is certified when none of its grid neighbours is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asymptote.distill_config import STUDENT_AXES, StudentGrid, StudentPoint, StudentStart
from asymptote.scaling import CoordinateDescent
from asymptote.search_space import on_grid


class StudentDescent(CoordinateDescent):
    """CoordinateDescent over StudentPoint: pending / record / best / certified work unchanged, since
    neighbours and certification only read the point's and grid's named axes."""

    def __post_init__(self):
        unknown = set(self.axes) - set(STUDENT_AXES)
        if unknown:
            raise ValueError(f"axes {sorted(unknown)}: unknown; allowed: {', '.join(STUDENT_AXES)}")
        on_grid(self.start, self.grid, STUDENT_AXES)


def nearest(values: list[float], target: float) -> float:
    """The grid value closest to target on a log scale (ties: the smaller); 0 compared linearly."""
    if target > 0 and all(v > 0 for v in values):
        return min(values, key=lambda v: (abs(np.log(v / target)), v))
    return min(values, key=lambda v: (abs(v - target), v))


def student_start(
    grid: StudentGrid, start: StudentStart, member_epochs: float, single_weight_decay: float
) -> StudentPoint:
    """The descent's start: given values, else the members' epochs, the single model's weight decay,
    the middle synthetic amount and mix, the largest KL weight and the single model's learning rate
    (scale 1), each snapped to the grid."""

    def pick(axis: str, default: float) -> float:
        given = getattr(start, axis)
        return given if given is not None else nearest(getattr(grid, axis), default)

    middle = lambda axis: getattr(grid, axis)[(len(getattr(grid, axis)) - 1) // 2]  # noqa: E731
    return StudentPoint(
        epochs=pick("epochs", member_epochs),
        weight_decay=pick("weight_decay", single_weight_decay),
        synthetic=pick("synthetic", middle("synthetic")),
        mix=pick("mix", middle("mix")),
        alpha=pick("alpha", grid.alpha[-1]),
        lr_scale=pick("lr_scale", 1.0),
    )


# ----------------------------------------------------------------------------- retained fraction


@dataclass(frozen=True)
class Retention:
    """The ensemble's gain on test and each student's share of it, with bootstrap intervals."""

    gain: float
    gain_ci: tuple[float, float]
    resolved: bool
    """False when the gain's interval includes 0: the gain is within its own noise, no fraction is defined."""
    retained: dict[str, float | None]
    retained_ci: dict[str, tuple[float, float] | None]


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def retention(
    single: np.ndarray,
    ensemble: np.ndarray,
    students: dict[str, np.ndarray],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Retention:
    """retained = (L_single - L_student) / (L_single - L_ensemble) from per-window test losses.

    Every model is scored on the same windows, so windows are resampled together (a paired bootstrap):
    the interval carries the noise of which text the test split holds, not of training seeds.
    """
    n = len(single)
    if n < 2 or len(ensemble) != n or any(len(v) != n for v in students.values()):
        raise ValueError("retention needs the same >= 2 test windows for every model")
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    mean_s, mean_e = single.mean(), ensemble.mean()
    boot_s, boot_e = single[idx].mean(1), ensemble[idx].mean(1)
    gain, gain_ci = float(mean_s - mean_e), _interval(boot_s - boot_e, level)
    resolved = gain_ci[0] > 0
    retained: dict[str, float | None] = {}
    intervals: dict[str, tuple[float, float] | None] = {}
    for name, losses in students.items():
        if not resolved:
            retained[name], intervals[name] = None, None
            continue
        retained[name] = float((mean_s - losses.mean()) / gain)
        intervals[name] = _interval((boot_s - losses[idx].mean(1)) / (boot_s - boot_e), level)
    return Retention(gain, gain_ci, resolved, retained, intervals)
