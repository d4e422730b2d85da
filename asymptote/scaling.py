"""The data-constrained recipe of "Pre-training under infinite compute" (Kim, Kotha, Liang, Hashimoto 2025),
as pure logic: the hyper-parameter grid, certified coordinate descent, the ensemble member recipe and
the checks a study reports. No Ray, no Prefect: flows and Tune searchers drive these objects.

Coordinate descent walks a grid of (learning rate, weight decay, epochs). From a start point it runs
every one-step neighbour of the best point so far along the tuned axes, moves to the best, and stops
when the best point's neighbours have all been run and none is better: the point is then
*certified*. At a grid edge a neighbour that does not exist is not required. The standard recipe
fixes weight decay (0.1 in the paper) and tunes learning rate and epochs; the regularized recipe
tunes weight decay too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence, get_args

from asymptote.config import DataConfig, ModelConfig, TrainConfig
from asymptote.job_spec import TrainJob, make_job
from asymptote.search_space import AXES, Point, SearchGrid, Walk, neighbours, on_grid


def _loss(value: float) -> float:
    return value if math.isfinite(value) else math.inf  # a diverged run is worse than any finite one


def certified(point: Point, results: dict[Point, float], grid: SearchGrid, axes: Iterable[str]) -> bool:
    """True when the point and all its grid neighbours were run and no neighbour is better."""
    if point not in results:
        return False
    here = _loss(results[point])
    near = neighbours(point, grid, axes)
    return all(n in results for n in near) and all(_loss(results[n]) >= here for n in near)


WALKS = get_args(Walk)


@dataclass
class CoordinateDescent:
    """A certified coordinate descent over a grid; `pending()` says which points to run next.

    walk="neighbourhood" runs every unrun neighbour of the best point each round. walk="lines" is a
    cyclic line search: it takes the axes in turn, runs the best point's two neighbours along one, and
    keeps stepping in a direction that improved before moving to the next axis; it stops after a pass
    over every axis moves nothing, so its point is certified by the same test. A move costs one or two
    runs instead of a whole neighbourhood; rounds are smaller, so fewer runs go on at once."""

    grid: SearchGrid
    axes: tuple[str, ...]
    start: Point
    results: dict[Point, float] = field(default_factory=dict)
    max_runs: int | None = None
    walk: Walk = "neighbourhood"

    def __post_init__(self):
        unknown = set(self.axes) - set(AXES)
        if unknown:
            raise ValueError(f"axes {sorted(unknown)}: unknown; allowed: {', '.join(AXES)}")
        if self.walk not in WALKS:
            raise ValueError(f"walk={self.walk!r}: unknown; allowed: {', '.join(WALKS)}")
        on_grid(self.start, self.grid, self.axes)

    def record(self, point: Point, loss: float) -> None:
        self.results[point] = float(loss)

    def best(self) -> Point | None:
        """The lowest loss so far; ties go to the earliest recorded point (deterministic). The line
        walk's own point, which has that loss too (it moves only to a strictly lower one)."""
        if not self.results:
            return None
        if self.walk == "lines" and self.start in self.results:
            return self._lines()[0]
        return min(self.results, key=lambda p: _loss(self.results[p]))

    def pending(self) -> list[Point]:
        """Points to run next: the start, else the unrun neighbours of the best point (or, walking
        lines, the next points the line search needs)."""
        if self.exhausted:
            return []
        if self.walk == "lines":
            return self._lines()[1] if self.start in self.results else [self.start]
        best = self.best()
        if best is None:
            return [self.start]
        return [n for n in neighbours(best, self.grid, self.axes) if n not in self.results]

    def spare(self) -> list[Point]:
        """Points worth running on capacity that would otherwise idle, beyond pending(). Walking lines:
        the walk's point's unrun neighbours, which its certifying pass needs if the point stays put;
        results off the walk's path never change the path, so running them changes no choice. None
        for the neighbourhood walk (its pending is the whole neighbourhood) or under a run cap (they
        would spend it)."""
        if self.walk != "lines" or self.max_runs is not None or self.start not in self.results:
            return []
        here, need = self._lines()
        return [n for n in neighbours(here, self.grid, self.axes) if n not in self.results and n not in need]

    def _lines(self) -> tuple[Point, list[Point]]:
        """(the line search's point, the points it needs next), replayed from the start over the
        recorded results: a pure function of them, so a resumed search takes the same path."""
        loss = lambda p: _loss(self.results[p])  # noqa: E731
        here = self.start
        while True:
            moved = False
            for axis in self.axes:
                values = getattr(self.grid, axis)
                line = neighbours(here, self.grid, (axis,))
                missing = [p for p in line if p not in self.results]
                if missing:
                    return here, missing
                better = [p for p in line if loss(p) < loss(here)]
                if not better:
                    continue
                before = values.index(getattr(here, axis))
                here, moved = min(better, key=loss), True
                step = 1 if values.index(getattr(here, axis)) > before else -1  # keep going that way
                while 0 <= (j := values.index(getattr(here, axis)) + step) < len(values):
                    ahead = here._replace(**{axis: values[j]})
                    if ahead not in self.results:
                        return here, [ahead]
                    if loss(ahead) >= loss(here):
                        break
                    here = ahead
            if not moved:
                return here, []

    @property
    def exhausted(self) -> bool:
        return self.max_runs is not None and len(self.results) >= self.max_runs

    @property
    def certified(self) -> bool:
        best = self.best()
        return best is not None and certified(best, self.results, self.grid, self.axes)

    @property
    def done(self) -> bool:
        return self.certified or self.exhausted


# ----------------------------------------------------------------------------- runs at points


def train_at(template: TrainConfig, point: Point, **extra) -> TrainConfig:
    """The template's optimisation settings with the point's lr, weight decay and epochs (validated)."""
    fields = {"lr": point.lr, "weight_decay": point.weight_decay, "epochs": point.epochs, "max_steps": None}
    return TrainConfig.model_validate(template.model_dump() | fields | extra)


def point_job(
    model: ModelConfig,
    data: DataConfig,
    data_artifact: str,
    template: TrainConfig,
    point: Point,
    seed: int | None = None,
    **volatile,
) -> TrainJob:
    """The run at a grid point. Flows and Tune trials both build runs here, so equal points give equal
    job keys and one runs/<key> artifact (`volatile`: name, compute, store, progress_hub). seed: a
    replica with train_seed = data_seed = seed (None: the template's seeds, as the search ran it)."""
    extra = {} if seed is None else {"train_seed": seed, "data_seed": seed}
    train = train_at(template, point, **extra)
    return make_job(model=model, data=data, data_artifact=data_artifact, train=train, **volatile)


def member_train(
    template: TrainConfig, best: Point, k: int, epoch_factor: float = 2.0, weight_decay_factor: float = 0.5
) -> TrainConfig:
    """Ensemble member k: the single-model optimum with epochs doubled and weight decay halved (the
    paper's member recipe), and train_seed = data_seed = k so members differ in init and data order."""
    if k < 1:
        raise ValueError(f"member index k={k} must be >= 1")
    point = Point(best.lr, best.weight_decay * weight_decay_factor, best.epochs * epoch_factor)
    return train_at(template, point, train_seed=k, data_seed=k)


# ----------------------------------------------------------------------------- checks


def overfits(curve: dict[float, float], tol: float) -> bool:
    """True when the loss at the most epochs is worse than the curve's best by more than tol."""
    if len(curve) < 2:
        raise ValueError(f"an epoch curve needs at least 2 points to show overfitting, got {len(curve)}")
    last = curve[max(curve)]
    return _loss(last) > min(_loss(v) for v in curve.values()) + tol


def monotone_decreasing(values: Sequence[float], tol: float = 0.0) -> bool:
    """True when every value is below the previous one by more than tol."""
    return all(b < a - tol for a, b in zip(values, values[1:], strict=False))


# ----------------------------------------------------------------------------- ensembles of every subset


MAX_SUBSET_MEMBERS = 8  # 2^8 - 1 = 255 subsets; beyond that only first-k ensembles are evaluated


def subset_key(members: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(members))


def subset_losses(
    models: Sequence, tokens, block: int, batch_size: int = 64, device="cpu"
) -> dict[str, float]:
    """Loss of the logit-averaged ensemble of every non-empty subset of the members ("0,2" -> loss).

    Why every subset: the loss at k members is then the mean over all k-subsets, which cancels most of
    the luck of which members came first (a first-k curve can rise when member 2 is a poor draw).
    Holds all members and one batch of their logits; each member's forward pass runs once per batch.
    """
    import itertools

    import torch
    import torch.nn.functional as F

    # worker side (asymptote.ensemble_worker): the driver imports this module for the descent, never torch
    from asymptote.data import eval_windows, windows_to_batch

    if not 1 <= len(models) <= MAX_SUBSET_MEMBERS:
        raise ValueError(f"{len(models)} members: subsets need 1..{MAX_SUBSET_MEMBERS}")
    subsets = [s for k in range(1, len(models) + 1) for s in itertools.combinations(range(len(models)), k)]
    nll = dict.fromkeys(subsets, 0.0)
    count = 0
    starts = eval_windows(len(tokens), block)
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            x, y = windows_to_batch(tokens, starts[i : i + batch_size], block)
            z = torch.stack([m(x.to(device)).float() for m in models])
            y = y.to(device).reshape(-1)
            for s in subsets:
                avg = z[list(s)].mean(0)
                nll[s] += F.cross_entropy(avg.view(-1, avg.size(-1)), y, reduction="sum").item()
            count += y.numel()
    return {subset_key(s): v / count for s, v in nll.items()}
