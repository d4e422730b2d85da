"""The Tune side of a recipe search: the trial, the searchers and one Tune experiment per phase.

`tuning.search.run_search` loads this module when a search runs. The searchers work in grid-index
space on a `tuning.search.SearchSpec` (passed in, never imported: the spec's module loads this one).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from functools import partial
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from asymptote.infra.launch import concurrent_runs, ray_storage
from asymptote.job_spec import TrainJob
from asymptote.scaling import CoordinateDescent
from asymptote.search_space import Point
from asymptote.store import Store, layout
from asymptote.tuning.tune_pretrain import job_trial, trial_resources

# A tuning.search.SearchSpec: named, not imported, because that module loads this one.
SearchSpec = Any
METRIC = "val_loss"  # what tuning.tune_pretrain's trials report last: the run's final validation loss


# ----------------------------------------------------------------------------- the trial


def build_job(params: dict[str, Any], spec: SearchSpec) -> TrainJob:
    """A trial's TrainJob (tuning.tune_pretrain.job_trial trains it and reports its final val_loss)."""
    return spec.job(spec.point(params))


def trainable(spec: SearchSpec):
    return job_trial(partial(build_job, spec=spec), trial_resources(spec.job(spec.start)))


# ----------------------------------------------------------------------------- searchers


def _pickle_state(obj: Any, path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _unpickle(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


class CertifiedSearch(Searcher):
    """The paper's coordinate descent as a Tune searcher: each batch is the best point's unrun neighbours."""

    def __init__(self, spec: SearchSpec, known: dict[Point, float] | None = None, start: Point | None = None):
        super().__init__(metric=METRIC, mode="min")
        self.spec = spec
        self.cd = CoordinateDescent(
            spec.grid, spec.axes, start or spec.start, dict(known or {}), spec.max_runs
        )
        self.live: dict[str, Point] = {}

    def suggest(self, trial_id: str) -> dict | None:
        for point in self.cd.pending():
            if point not in self.live.values():
                self.live[trial_id] = point
                return self.spec.indices(point)
        return Searcher.FINISHED if self.cd.done and not self.live else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        point = self.live.pop(trial_id, None)
        if point is not None:
            self.cd.record(point, _loss_of(result, error))

    def get_state(self) -> dict:
        return {"results": dict(self.cd.results), "live": dict(self.live)}

    def set_state(self, state: dict) -> None:
        self.cd.results, self.live = dict(state["results"]), dict(state["live"])

    def save(self, checkpoint_path: str) -> None:
        _pickle_state(self.get_state(), checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(_unpickle(checkpoint_path))


def _loss_of(result: dict | None, error: bool) -> float:
    if error or not result or result.get(METRIC) is None:
        return math.inf  # a failed run counts as worse than any finished one
    return float(result[METRIC])


class DistinctPoints(Searcher):
    """Wraps a sampler whose proposals snap to grid points: a repeat of a finished point is answered
    from its known loss, a repeat of a running point waits for it, so each point trains once."""

    def __init__(self, inner: Searcher, spec: SearchSpec, max_repeats: int = 20):
        super().__init__(metric=METRIC, mode="min")
        self.inner, self.spec, self.max_repeats = inner, spec, max_repeats
        self.known: dict[Point, float] = {}
        self.live: dict[str, tuple[str, Point]] = {}  # Tune trial -> (inner trial, point)
        self.waiting: list[tuple[str, Point]] = []  # inner trials that repeat a running point
        self.asked = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        live = {p for _, p in self.live.values()}
        if len(self.known) + len(live - set(self.known)) >= self.spec.grid.size(self.spec.axes):
            return Searcher.FINISHED if not self.live else None  # every grid point is known or running
        for _ in range(self.max_repeats):
            inner_id = f"{trial_id}-{self.asked}"
            self.asked += 1
            config = self.inner.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                return config
            point = self.spec.point(config)
            if point in self.known:
                self.inner.on_trial_complete(inner_id, {METRIC: self.known[point]})
            elif any(p == point for _, p in self.live.values()):
                self.waiting.append((inner_id, point))
            else:
                self.live[trial_id] = (inner_id, point)
                return self.spec.indices(point)
        return Searcher.FINISHED  # the sampler keeps proposing points it has already seen: nothing new

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        inner_id, point = self.live.pop(trial_id)
        loss = _loss_of(result, error)
        self.known[point] = loss
        self.inner.on_trial_complete(inner_id, {METRIC: loss})
        for wid, wpoint in [w for w in self.waiting if w[1] == point]:
            self.inner.on_trial_complete(wid, {METRIC: loss})
            self.waiting.remove((wid, wpoint))

    def save(self, checkpoint_path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.inner.save(os.path.join(tmp, "inner.pkl"))
            inner = open(os.path.join(tmp, "inner.pkl"), "rb").read()
        state = {"known": self.known, "live": self.live, "waiting": self.waiting, "asked": self.asked}
        _pickle_state({"inner": inner, **state}, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        state = _unpickle(checkpoint_path)
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "inner.pkl"), "wb") as f:
                f.write(state.pop("inner"))
            self.inner.restore(os.path.join(tmp, "inner.pkl"))
        self.known, self.live, self.waiting, self.asked = (
            state["known"],
            state["live"],
            state["waiting"],
            state["asked"],
        )


def _optuna(spec: SearchSpec) -> tuple[Searcher, dict]:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = {axis: tune.randint(0, len(getattr(spec.grid, axis))) for axis in spec.axes}
    searcher = OptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        metric=METRIC,
        mode="min",
        points_to_evaluate=[spec.indices(spec.start)],
    )
    return searcher, space


def _bayesopt(spec: SearchSpec) -> tuple[Searcher, dict]:
    from ray.tune.search.bayesopt import BayesOptSearch

    space = {axis: tune.uniform(0, len(getattr(spec.grid, axis)) - 1) for axis in spec.axes}
    start = {k: float(v) for k, v in spec.indices(spec.start).items()}
    searcher = BayesOptSearch(metric=METRIC, mode="min", random_state=spec.seed, points_to_evaluate=[start])
    return searcher, space


SAMPLER_BUILDERS = {"optuna": _optuna, "bayesopt": _bayesopt}


# ----------------------------------------------------------------------------- running a search


def _tune_phase(spec: SearchSpec, phase: str, searcher: Searcher, space: dict, samples: int) -> list[dict]:
    """Run (or resume) one Tune experiment and return its trials' final results."""
    store = Store(spec.store)
    storage, fs = ray_storage(store, f"{spec.rel}/tune")
    path = f"{storage}/{phase}"
    if tune.Tuner.can_restore(path, storage_filesystem=fs):
        tuner = tune.Tuner.restore(
            path,
            trainable(spec),
            resume_unfinished=True,
            resume_errored=True,
            param_space=space,
            storage_filesystem=fs,
        )
    else:
        tuner = tune.Tuner(
            trainable(spec),
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=samples,
                metric=METRIC,
                mode="min",
                max_concurrent_trials=concurrent_runs(spec.compute),
            ),
            run_config=tune.RunConfig(name=phase, storage_path=storage, storage_filesystem=fs, verbose=0),
        )
    grid = tuner.fit()
    return _rows(spec, [r for r in grid if r.metrics and r.metrics.get("final")])


def _rows(spec: SearchSpec, results) -> list[dict[str, Any]]:
    """One row per distinct grid point a finished trial ran."""
    rows: dict[Point, dict] = {}
    for r in results:
        point = spec.point(r.config)
        rows[point] = {
            **point._asdict(),
            "loss": float(r.metrics[METRIC]),
            "run": layout("run", key=r.metrics["run_key"]),
        }
    return list(rows.values())


def phase(spec: SearchSpec, name: str, build) -> list[dict[str, Any]]:
    """A phase's rows, from its committed artifact if it finished before, else by running it."""
    store = Store(spec.store)
    rel = f"{spec.rel}/{name}"
    if store.has(rel):
        return store.read_json(rel, "results.json")
    searcher, space, samples = build()
    rows = _tune_phase(spec, name, searcher, space, samples)
    with store.writer(rel, kind="search-phase", meta={"phase": name, "sampler": spec.sampler}) as d:
        (d / "results.json").write_text(json.dumps(rows, indent=1))
    return rows


def sampler(spec: SearchSpec) -> tuple[Searcher, dict, int]:
    inner, space = SAMPLER_BUILDERS[spec.sampler](spec)
    return DistinctPoints(inner, spec), space, spec.trials
