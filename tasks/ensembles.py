"""Evaluating runs and their ensembles as one cached, retried step on Ray, for every method.

Members stream through memory one at a time (asymptote.ensemble.stream_eval): peak memory is about
one member plus the logit accumulator, whatever the ensemble's size.
"""

from __future__ import annotations

from prefect import task

from asymptote.infra.cluster import gpu_if_any, ray_ready
from asymptote.infra.remotes import remote
from asymptote.store import Store
from asymptote.tasks.caching import cached
from asymptote.versioning import step_key


def _ensemble_eval_remote(store: Store, runs: list[str], data_rel: str, split: str) -> dict[str, list[float]]:
    import torch

    from asymptote.ensemble import stream_eval
    from asymptote.job import model_from_run
    from asymptote.shards import load_split

    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # Ray shows only assigned GPUs
    tokens = load_split(store, data_rel, split)
    block = store.manifest(runs[0]).meta["model"]["block_size"]
    return stream_eval(
        lambda i: model_from_run(store, runs[i], device), len(runs), tokens, block, device=device
    )


@task(name="ensemble-eval", retries=1)
def ensemble_eval_task(
    store: Store, runs: list[str], data_rel: str, key: str, split: str = "val"
) -> dict[str, list[float]]:
    import ray

    ray_ready()
    return ray.get(
        remote(_ensemble_eval_remote, num_cpus=1).options(**gpu_if_any()).remote(store, runs, data_rel, split)
    )


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


def _members_here(store: Store, runs: list[str], data_rel: str, split: str):
    """(models, tokens, device) on the worker a task landed on: every member at once, for small K."""
    import torch

    from asymptote.job import model_from_run
    from asymptote.shards import load_split

    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # Ray shows only assigned GPUs
    models = [model_from_run(store, r, device).eval() for r in runs]
    return models, load_split(store, data_rel, split), device


def _subsets_remote(store: Store, runs: list[str], data_rel: str, split: str) -> dict[str, float]:
    from asymptote.scaling import subset_losses

    models, tokens, device = _members_here(store, runs, data_rel, split)
    return subset_losses(models, tokens, models[0].cfg.block_size, device=device)


@task(name="ensemble-subsets", retries=1)
def subsets_task(store: Store, runs: list[str], data_rel: str, split: str, key: str) -> dict[str, float]:
    import ray

    ray_ready()
    return ray.get(
        remote(_subsets_remote, num_cpus=1).options(**gpu_if_any()).remote(store, runs, data_rel, split)
    )


def ensemble_subsets(
    store: Store, runs: list[str], data_rel: str, split: str = "test", refresh: bool = False
):
    """A future of the logit-ensemble loss on `split` of every non-empty subset of the runs ("0,2" ->
    loss; all members held at once, so for small K): the scaling study's loss at k members is the mean
    over k-subsets."""
    key = step_key(__name__, runs=runs, data=data_rel, split=split, what="ensemble_subset_losses")
    return cached(subsets_task, store, refresh).submit(store, runs, data_rel, split, key=key)


# ----------------------------------------------------------------------------- every multiset, per test block


def _multisets_remote(store: Store, runs: list[str], data_rel: str, split: str) -> dict:
    from asymptote.ensemble_windows import multiset_losses

    models, tokens, device = _members_here(store, runs, data_rel, split)
    return multiset_losses(models, tokens, models[0].cfg.block_size, device=device)


@task(name="ensemble-multisets", retries=1)
def multisets_task(store: Store, runs: list[str], data_rel: str, split: str, key: str) -> dict:
    import ray

    ray_ready()
    return ray.get(
        remote(_multisets_remote, num_cpus=1).options(**gpu_if_any()).remote(store, runs, data_rel, split)
    )


def ensemble_multisets(
    store: Store, runs: list[str], data_rel: str, split: str = "test", refresh: bool = False
):
    """A future of {"windows", "losses"}: per block of test windows, the loss of the logit ensemble of
    every multiset of the runs ("0,0,2": run 0 weighted twice), which the member bootstrap redraws."""
    key = step_key(__name__, runs=runs, data=data_rel, split=split, what="ensemble_multiset_losses")
    return cached(multisets_task, store, refresh).submit(store, runs, data_rel, split, key=key)
