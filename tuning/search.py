"""The recipe search as a Ray Tune search: certified coordinate descent, Optuna or BayesOpt.

This module holds what a search is (`SearchSpec`) and what it found (`SearchResult`), and runs it;
the Tune side (trials, searchers, experiments) is `tuning.searchers`, loaded only when a search runs.

Every trial is one TrainJob, built by the same function the scaling flow uses, so a run a trial
trains is the runs/<key> artifact the flow would ask for (and is never trained twice: a trial whose
run is already committed returns at once). Trials are `tuning.tune_pretrain.job_trial`s: a Ray Train
TorchTrainer per trial (local mode for one worker, a worker group for several) that reports the
run's final validation loss last.

Searchers work in grid-index space. `CertifiedSearch` walks the grid with `asymptote.scaling.
CoordinateDescent`; Optuna (TPE) and BayesOpt propose indices that `DistinctPoints` snaps onto the
grid, answering repeats from results it already has so no grid point is trained twice at once.
A sampler phase can be followed by a certification phase that continues coordinate descent from
the sampler's best point until it is certified.

Results live in the store: each phase's Tune experiment under searches/<key>/tune/<phase> (from
which `Tuner.restore` resumes a search whose driver died) and, once a phase finishes, its results
as the committed artifact searches/<key>/<phase>.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    StoreConfig,
    TrainConfig,
    key_dict,
)
from asymptote.job_spec import TrainJob
from asymptote.scaling import certified, point_job
from asymptote.search_space import AXES, Point, SearchGrid, on_grid
from asymptote.store import layout
from asymptote.versioning import step_key

SAMPLERS = ("certified", "optuna", "bayesopt")


class SearchSpec(BaseModel):
    """One search: a model and token budget, the grid and tuned axes, and how to sample it."""

    name: str = "search"
    """Label of the search's runs in progress displays."""
    model: ModelConfig
    """Model shape of every run."""
    data: DataConfig
    """Corpus settings; data.max_train_tokens is the token budget D."""
    data_artifact: str
    """Store-relative path of the prepared data (data/<key>)."""
    train: TrainConfig
    """Template: every setting except lr, weight decay and epochs, which the point sets."""
    grid: SearchGrid = Field(default_factory=SearchGrid)
    """The values each axis may take (default: the paper's grid)."""
    axes: tuple[str, ...] = ("epochs", "lr", "weight_decay")
    """Tuned axes; the others stay at the start point's values (standard recipe: epochs and lr)."""
    start: Point
    """Where coordinate descent starts and what optuna / bayesopt evaluate first."""
    sampler: Literal["certified", "optuna", "bayesopt"] = "certified"
    """certified coordinate descent, Optuna TPE, or BayesOpt (Gaussian process) over grid indices."""
    trials: int = Field(16, ge=1)
    """Trials of the optuna / bayesopt phase (coordinate descent runs until certified)."""
    certify: bool = True
    """After an optuna / bayesopt phase, continue coordinate descent from its best point until certified."""
    max_runs: int | None = Field(None, ge=1)
    """Stop coordinate descent after this many distinct points even if not certified (None: no cap)."""
    seed: int = 0
    """Seed of the optuna / bayesopt sampler."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    """Execution of each run (not part of the search's key)."""
    store: StoreConfig = Field(default_factory=StoreConfig)
    """Artifact store for runs, Tune experiments and results (not part of the key)."""
    progress_hub: str | None = None
    """The driver's progress actor, if any."""

    @model_validator(mode="after")
    def _start_on_grid(self) -> "SearchSpec":
        unknown = set(self.axes) - set(AXES)
        if unknown:
            raise ValueError(f"axes {sorted(unknown)}: unknown; allowed: {', '.join(AXES)}")
        on_grid(self.start, self.grid, self.axes)
        return self

    @property
    def key(self) -> str:
        body = self.model_dump(exclude={"name", "compute", "store", "progress_hub"})
        body |= {"model": key_dict(self.model), "data": key_dict(self.data), "train": key_dict(self.train)}
        # the walk (asymptote.scaling) and the searchers (tuning.searchers, loaded by run_search) decide
        # which runs a search holds: both are in this module's import closure, so in the key
        return step_key(__name__, **body)

    @property
    def rel(self) -> str:
        return layout("search", key=self.key)

    def job(self, point: Point) -> TrainJob:
        return point_job(
            self.model,
            self.data,
            self.data_artifact,
            self.train,
            point,
            name=f"{self.name} {point.label()}",
            compute=self.compute,
            store=self.store,
            progress_hub=self.progress_hub,
        )

    def point(self, config: dict[str, Any]) -> Point:
        """Grid indices (ints, or floats from BayesOpt) of the tuned axes -> a point on the grid."""
        values = self.start._asdict()
        for axis in self.axes:
            grid = getattr(self.grid, axis)
            values[axis] = grid[min(max(int(round(float(config[axis]))), 0), len(grid) - 1)]
        return Point(**values)

    def indices(self, point: Point) -> dict[str, int]:
        return {axis: getattr(self.grid, axis).index(getattr(point, axis)) for axis in self.axes}


class SearchResult(BaseModel):
    """Every point a search ran, its best point and whether that point is certified."""

    key: str
    rel: str
    results: list[dict[str, Any]]
    """One row per distinct point: lr, weight_decay, epochs, loss, run (runs/<key>)."""
    best: dict[str, Any]
    certified: bool

    def losses(self) -> dict[Point, float]:
        return _losses(self.results)


def _row_point(row: dict[str, Any]) -> Point:
    return Point(row["lr"], row["weight_decay"], row["epochs"])


def _losses(rows: list[dict[str, Any]]) -> dict[Point, float]:
    """Result rows (lr, weight_decay, epochs, loss, ...) -> loss per grid point."""
    return {_row_point(r): r["loss"] for r in rows}


# ----------------------------------------------------------------------------- running a search


def run_search(spec: SearchSpec) -> SearchResult:
    """Run the search on the Ray cluster this process is connected to (resuming where it stopped)."""
    # Ray Tune and the trials' torch: loaded when a search runs, so a cached call never imports them
    from asymptote.tuning import searchers

    if spec.sampler not in SAMPLERS:
        raise ValueError(f"sampler={spec.sampler!r}: unknown; allowed: {', '.join(SAMPLERS)}")
    rows: list[dict[str, Any]] = []
    cap = spec.max_runs or spec.grid.size(spec.axes)
    if spec.sampler != "certified":
        rows = searchers.phase(spec, spec.sampler, lambda: searchers.sampler(spec))
    known = _losses(rows)
    if spec.sampler == "certified" or spec.certify:
        start = min(known, key=known.get) if known else spec.start
        rows = rows + searchers.phase(
            spec, "certify", lambda: (searchers.CertifiedSearch(spec, known, start), {}, cap)
        )
    return _result(spec, rows)


def _result(spec: SearchSpec, rows: list[dict[str, Any]]) -> SearchResult:
    merged = {_row_point(r): r for r in rows}
    losses = {p: r["loss"] for p, r in merged.items()}
    best = min(losses, key=lambda p: losses[p] if math.isfinite(losses[p]) else math.inf)
    return SearchResult(
        key=spec.key,
        rel=spec.rel,
        results=list(merged.values()),
        best=merged[best],
        certified=certified(best, losses, spec.grid, spec.axes),
    )
