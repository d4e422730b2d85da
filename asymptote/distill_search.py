"""How students are chosen and judged: a certified search over student settings (its grid grown past a
chosen edge), and the retained fraction of the ensemble's gain with a hierarchical bootstrap interval
(seeds, then test windows; asymptote.stats). Pure (no torch, Ray, Prefect).

The search is the scaling study's certified coordinate descent (asymptote.scaling.CoordinateDescent)
walking a grid with the student's axes (epochs, weight decay, synthetic amount, mixing weight, KL
weight) instead of (learning rate, weight decay, epochs): every point is a training run judged on
validation, and the best point is certified when none of its grid neighbours is better.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from asymptote import stats
from asymptote.distill_config import (
    LINEAR_AXES,
    STUDENT_AXES,
    Figure,
    StudentGrid,
    StudentPoint,
    StudentStart,
)
from asymptote.scaling import CoordinateDescent
from asymptote.search_space import at_edges, on_grid


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


# ----------------------------------------------------------------------------- grids that grow


def _clean(x: float) -> float:
    return float(f"{x:.12g}")  # 0.01 * 0.3 is the grid value 0.003, not 0.0030000000000000001


def next_value(
    values: Sequence[float], upward: bool, limits: tuple[float, float], linear: bool
) -> float | None:
    """The value one step past a grid's edge, by the step between its two outermost values (a ratio, or
    for a linear axis a difference); a step past a hard limit lands on it, and a ratio step down toward
    a limit of 0 goes to 0; None when the edge is the limit."""
    lo, hi = _clean(limits[0]), _clean(limits[1])
    edge, inner = (values[-1], values[-2]) if upward else (values[0], values[1])
    if linear:
        nxt = edge + (edge - inner)
    elif not upward and lo == 0:
        nxt = 0.0  # ratio steps never reach 0 (no weight decay): the step down from the lowest value is 0
    elif edge > 0 and inner > 0:
        nxt = edge * (edge / inner)
    else:
        return None
    nxt = _clean(min(max(nxt, lo), hi))
    return None if nxt == edge or (upward and nxt <= edge) or (not upward and nxt >= edge) else nxt


def grow(cd: CoordinateDescent, limits: Callable[[str, list[float]], tuple[float, float]]) -> list[str]:
    """Extend the grid of a settled search on every searched axis whose choice sits on an edge, by one
    value in that direction within the axis's hard limits. The search keeps its results and start
    (its path replays up to the old edge, then goes on); returns the axes grown (empty: nothing to grow)."""
    best = cd.best()
    if best is None or cd.exhausted:
        return []
    grown = {}
    for axis in at_edges(best._asdict(), cd.grid, cd.axes):
        values = list(getattr(cd.grid, axis))
        upward = getattr(best, axis) == values[-1]
        nxt = next_value(values, upward, limits(axis, values), axis in LINEAR_AXES)
        if nxt is not None:
            grown[axis] = sorted([*values, nxt])
    if grown:
        cd.grid = cd.grid.model_validate(cd.grid.model_dump() | grown)
    return list(grown)


def settled_edges(cd: CoordinateDescent) -> list[str]:
    """The searched axes whose choice still sits on an edge of the final grid."""
    best = cd.best()
    return at_edges(best._asdict(), cd.grid, cd.axes) if best is not None else []


# ----------------------------------------------------------------------------- the ensemble's member noise

MIN_JACKKNIFE_MEMBERS = 3  # with 2 members a delete-one ensemble is one member: too crude a spread


def leave_one_out(members: list[str]) -> list[list[str]]:
    """The K ensembles of K - 1 members, member i left out of the i-th (none below MIN_JACKKNIFE_MEMBERS)."""
    if len(members) < MIN_JACKKNIFE_MEMBERS:
        return []
    return [members[:i] + members[i + 1 :] for i in range(len(members))]


def member_pseudo_seeds(full: np.ndarray, loo: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The ensemble as K pseudo-seeds whose spread is its delete-one jackknife spread over members.

    The ensemble is one model of K members, each trained from its own seed; another K seeds give
    another ensemble. Pseudo-seed i, window by window: full + (K - 1) (mean_j loo_j - loo_i). Their
    mean is the full ensemble's loss exactly (no bias correction toward more members), and the
    variance of their mean is the jackknife variance (K - 1)/K sum_i (loo_i - mean loo)^2, so
    resampling them as seeds (asymptote.stats) puts member noise into every interval that holds the
    ensemble, paired by window like the other arms."""
    full = np.asarray(full, np.float64)
    if not loo:
        return [full]
    stack = np.stack([np.asarray(x, np.float64) for x in loo])
    return list(full + (len(stack) - 1) * (stack.mean(0) - stack))


# ----------------------------------------------------------------------------- retained fraction


@dataclass(frozen=True)
class Retention:
    """The test figures from a hierarchical bootstrap (seeds, then test windows) and each student's
    share of the ensemble's gain.

    losses: single, ensemble, control and each student, {estimate, ci, p_direction}; a p_direction
    compares the arm with the single model (the single model's: with the ensemble)."""

    gain: float
    gain_ci: tuple[float, float]
    resolved: bool
    """False when the gain's interval includes 0: the gain is within its own noise, no fraction is defined."""
    retained: dict[str, float | None]
    retained_ci: dict[str, tuple[float, float] | None]
    losses: dict[str, Figure] = dataclasses.field(default_factory=dict)
    retained_figures: dict[str, Figure | None] = dataclasses.field(default_factory=dict)
    teacher_effect: Figure | None = None
    resampled: str = ""


def _seeds(x) -> list[np.ndarray]:
    """An arm as a list of per-seed window losses (one 1-D array is one seed)."""
    if isinstance(x, np.ndarray) and x.ndim == 1:
        return [x]
    return [np.asarray(s, np.float64) for s in x]


def _fig(estimate: float, draws: np.ndarray, null: float, level: float) -> Figure:
    return Figure(**stats.figure(estimate, draws, null=null, level=level))


def retention(
    single,
    ensemble,
    students: dict,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    control=None,
    control_of: str | None = None,
) -> Retention:
    """retained = (L_single - L_student) / (L_single - L_ensemble) from per-window test losses.

    Each arm is a list over independently trained seeds of per-window losses (one array: one seed).
    One bootstrap draw resamples each arm's seeds, then reweights the test windows, the same weights
    for every arm (asymptote.stats.resample): the interval carries seed noise and the noise of which
    text the test split holds. `control` (the no-teacher control) is a figure beside the students, with
    its own retained fraction; `teacher_effect` is control minus the student `control_of` (nats).
    """
    arms = {"single": _seeds(single), "ensemble": _seeds(ensemble)}
    arms |= {name: _seeds(x) for name, x in students.items()}
    if control is not None:
        arms["control"] = _seeds(control)
    n = len(arms["single"][0])
    if n < 2:
        raise ValueError("retention needs the same >= 2 test windows for every model")
    draws = stats.resample(arms, n_boot=n_boot, seed=seed)
    est = stats.point(arms)
    gap = draws["single"] - draws["ensemble"]
    gain = _fig(est["single"] - est["ensemble"], gap, 0.0, level)
    resolved = gain.ci[0] > 0
    losses = {}
    for name in arms:  # p_direction of a loss: its side of the single model (the single's: of the ensemble)
        ref = "ensemble" if name == "single" else "single"
        side = stats.figure(est[name] - est[ref], draws[name] - draws[ref], null=0.0, level=level)
        own = stats.figure(est[name], draws[name], level=level)
        losses[name] = Figure(estimate=own["estimate"], ci=own["ci"], p_direction=side["p_direction"])
    kept: dict[str, Figure | None] = {}
    for name in [*students, *(["control"] if control is not None else [])]:
        if not resolved:
            kept[name] = None
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (draws["single"] - draws[name]) / gap
        kept[name] = _fig((est["single"] - est[name]) / gain.estimate, ratio, 0.0, level)
    effect = None
    if control is not None and control_of in students:
        effect = _fig(est["control"] - est[control_of], draws["control"] - draws[control_of], 0.0, level)
    return Retention(
        gain=gain.estimate,
        gain_ci=(gain.ci[0], gain.ci[1]),
        resolved=resolved,
        retained={m: (kept[m].estimate if kept[m] else None) for m in students},
        retained_ci={m: ((kept[m].ci[0], kept[m].ci[1]) if kept[m] else None) for m in students},
        losses=losses,
        retained_figures=kept,
        teacher_effect=effect,
        resampled=stats.resampled(arms),
    )
