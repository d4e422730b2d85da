"""Prefect tasks of the scaling study: coordinate descent over cached training runs, streamed ensemble
evaluation on Ray, and a Ray Tune search as one cached step.

Every run goes through `tasks.pretrain.submit_train` (cached by the run's key), so the points of a
descent, the members of an ensemble and anything else submitted together share the cluster, and a
second call of the study trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import ray
from prefect import task

from asymptote.config import stable_hash
from asymptote.infra.storage import Store
from asymptote.job import TrainJob
from asymptote.refs import DataRef, RunRef
from asymptote.scaling import CoordinateDescent, Point
from asymptote.tasks.caching import cached
from asymptote.tasks.pretrain import submit_train
from asymptote.versioning import code_version_of


@dataclass
class Descent:
    """One certified coordinate descent (a size, a recipe, a budget) whose points are cached runs."""

    name: str
    cd: CoordinateDescent
    job: Callable[[Point], TrainJob]
    runs: dict[Point, RunRef] = field(default_factory=dict)

    @property
    def best(self) -> Point:
        return self.cd.best()

    @property
    def best_run(self) -> RunRef:
        return self.runs[self.cd.best()]


def train_all(jobs: list[TrainJob]) -> list[RunRef]:
    """Submit every job at once (one future per distinct key) and wait; Ray runs as many as fit."""
    futures = {}
    for job in jobs:
        if job.key not in futures:
            futures[job.key] = submit_train(job)
    return [futures[job.key].result() for job in jobs]


def descend(descents: list[Descent]) -> None:
    """Advance all descents together: each round submits every descent's pending points concurrently,
    records the losses, and stops when every descent is certified (or hit its run cap)."""
    while True:
        batch = [(d, p) for d in descents for p in d.cd.pending()]
        if not batch:
            return
        refs = train_all([d.job(p) for d, p in batch])
        for (d, p), ref in zip(batch, refs):
            d.runs[p] = ref
            d.cd.record(p, ref.summary.get("val_loss", float("nan")))


# ----------------------------------------------------------------------------- ensembles


@ray.remote(num_cpus=1)
def _stream_eval_remote(store: Store, member_rels: list[str], data_rel: str) -> dict[str, list[float]]:
    import torch

    from asymptote.ensemble import stream_eval
    from asymptote.job import model_from_run
    from asymptote.shards import load_dataset

    torch.set_num_threads(1)
    _, val, _ = load_dataset(store, data_rel)
    block = model_from_run(store, member_rels[0]).cfg.block_size
    return stream_eval(lambda i: model_from_run(store, member_rels[i]), len(member_rels), val, block)


@task(name="ensemble-eval", retries=1)
def ensemble_eval_task(store: Store, member_rels: list[str], data_rel: str, key: str) -> dict[str, list[float]]:
    return ray.get(_stream_eval_remote.remote(store, member_rels, data_rel))


def ensemble_eval(store: Store, members: list[RunRef], data: DataRef, refresh: bool = False):
    """Losses of each member and of the first-k ensembles (logit and probability averaging), streamed
    one member at a time; cached by the members' content-addressed runs and the data."""
    rels = [m.rel for m in members]
    key = stable_hash({"members": rels, "data": data.rel, "what": "ensemble-stream-eval",
                      "code": code_version_of("asymptote.ensemble")})
    return cached(ensemble_eval_task, store, refresh).submit(store, rels, data.rel, key=key)


# ----------------------------------------------------------------------------- Ray Tune


@task(name="tune-search", retries=0)
def tune_search_task(spec_dict: dict, key: str) -> dict:
    from asymptote.tuning.search import SearchSpec, run_search

    return run_search(SearchSpec.model_validate(spec_dict)).model_dump()


def tune_search(spec, refresh: bool = False):
    """A Ray Tune search (optuna / bayesopt / certified) as one cached step; returns a SearchResult."""
    from asymptote.tuning.search import SearchResult

    out = cached(tune_search_task, Store(spec.store), refresh)(spec.model_dump(), key=spec.key)
    return SearchResult.model_validate(out)
