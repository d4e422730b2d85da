"""Evaluating runs and their ensembles as one cached, retried step on Ray, for every method.

Members stream through memory one at a time (asymptote.ensemble.stream_eval): peak memory is about
one member plus the logit accumulator, whatever the ensemble's size. What runs on a worker sits in
asymptote.ensemble_worker, started by name through `on_worker`, the one Ray entry point.
"""

from __future__ import annotations

from prefect import task

from asymptote.infra.cluster import gpu_if_any, ray_ready
from asymptote.infra.remotes import remote
from asymptote.store import Store
from asymptote.tasks.caching import cached
from asymptote.versioning import step_key


def on_worker(name: str, *args):
    """Ray entry point: asymptote.ensemble_worker.<name>(*args) on the worker this task landed on."""
    from asymptote import ensemble_worker  # worker side: it imports torch, which the driver never loads

    return getattr(ensemble_worker, name)(*args)


def run_on_worker(name: str, *args):
    """Run ensemble_worker.<name>(*args) as one Ray task (on a GPU when the cluster has one) and wait."""
    import ray

    ray_ready()
    return ray.get(remote(on_worker, num_cpus=1).options(**gpu_if_any()).remote(name, *args))


@task(name="ensemble-eval", retries=1)
def ensemble_eval_task(
    store: Store, runs: list[str], data_rel: str, key: str, split: str = "val"
) -> dict[str, list[float]]:
    return run_on_worker("ensemble_losses", store, runs, data_rel, split)


def ensemble_eval(store: Store, runs: list[str], data_rel: str, refresh: bool = False, split: str = "val"):
    """A future of the loss on `split` (val: what choices read; test: what a study reports) of each run
    and of the first-k ensembles (logit and probability averaging); cached by the runs'
    content-addressed paths, the data, the split and the ensemble code."""
    if split not in ("val", "test"):
        raise ValueError(f"split={split!r}: allowed: val, test")
    parts = {} if split == "val" else {"split": split}  # val keeps its earlier key
    key = step_key(__name__, runs=runs, data=data_rel, what="ensemble_losses", **parts)
    return cached(ensemble_eval_task, store, refresh).submit(store, runs, data_rel, key=key, split=split)


# ----------------------------------------------------------------------------- every subset (scaling study)


@task(name="ensemble-subsets", retries=1)
def subsets_task(store: Store, runs: list[str], data_rel: str, split: str, key: str) -> dict[str, float]:
    return run_on_worker("subsets", store, runs, data_rel, split)


def ensemble_subsets(
    store: Store, runs: list[str], data_rel: str, split: str = "test", refresh: bool = False
):
    """A future of the logit-ensemble loss on `split` of every non-empty subset of the runs ("0,2" ->
    loss; all members held at once, so for small K): the scaling study's loss at k members is the mean
    over k-subsets."""
    key = step_key(__name__, runs=runs, data=data_rel, split=split, what="ensemble_subset_losses")
    return cached(subsets_task, store, refresh).submit(store, runs, data_rel, split, key=key)


# ----------------------------------------------------------------------------- every multiset, per test block


@task(name="ensemble-multisets", retries=1)
def multisets_task(store: Store, runs: list[str], data_rel: str, split: str, key: str) -> dict:
    return run_on_worker("multisets", store, runs, data_rel, split)


def ensemble_multisets(
    store: Store, runs: list[str], data_rel: str, split: str = "test", refresh: bool = False
):
    """A future of {"windows", "losses"}: per block of test windows, the loss of the logit ensemble of
    every multiset of the runs ("0,0,2": run 0 weighted twice), which the member bootstrap redraws."""
    key = step_key(__name__, runs=runs, data=data_rel, split=split, what="ensemble_multiset_losses")
    return cached(multisets_task, store, refresh).submit(store, runs, data_rel, split, key=key)
