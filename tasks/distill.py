"""Prefect tasks for distillation: sample synthetic text on every Ray worker, evaluate on the test split.

Sampling cuts the run into seeded chunks (asymptote.sampling) and deals them round-robin to one Ray
task per free CPU (or per GPU), each loading the teachers once (ensemble_worker.sample_share); the driver stitches the chunks back
in order and commits them as a data artifact in the shards format. Because a chunk's tokens depend
only on its seed, the artifact is the same whatever the number of workers, so its cache key leaves
the worker count out.
"""

from __future__ import annotations

import numpy as np
from prefect import task

from asymptote.config import key_dict
from asymptote.distill_config import SYNTHETIC_VAL_FRACTION, SamplingConfig
from asymptote.infra.cluster import cluster_has_gpus, ray_ready
from asymptote.infra.remotes import remote
from asymptote.refs import DataRef, data_ref
from asymptote.store import Store, layout
from asymptote.synthetic import save_synthetic
from asymptote.tasks.caching import cached
from asymptote.tasks.ensembles import on_worker, run_on_worker
from asymptote.versioning import step_key


def sampling_workers(n_chunks: int) -> tuple[int, bool]:
    """(workers, use_gpu): one per GPU if the cluster has GPUs, else one per free CPU; at most one per chunk."""
    import ray

    if cluster_has_gpus():
        return max(1, min(n_chunks, int(ray.cluster_resources().get("GPU", 1)))), True
    return max(1, min(n_chunks, int(ray.available_resources().get("CPU", 1)))), False


def sample_sequences(
    store: Store,
    teachers: list[str],
    data_rel: str,
    cfg: SamplingConfig,
    length: int,
    workers: int | None = None,
) -> np.ndarray:
    """(n_sequences, length) tokens sampled from the teachers, chunks spread over Ray workers."""
    import ray

    n_workers, use_gpu = sampling_workers(cfg.n_chunks())
    n_workers = workers or n_workers
    shares = [list(range(w, cfg.n_chunks(), n_workers)) for w in range(n_workers)]
    fn = remote(on_worker).options(num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=2)
    spec = cfg.model_dump()
    results = ray.get(
        [fn.remote("sample_share", store, teachers, data_rel, spec, length, s, use_gpu) for s in shares]
    )
    by_chunk = {
        c: arr
        for share, arrs in zip(shares, results, strict=False)
        for c, arr in zip(share, arrs, strict=False)
    }
    return np.concatenate([by_chunk[c] for c in range(cfg.n_chunks())])


@task(name="sample", retries=1, retry_delay_seconds=5)
def sample_task(
    store: Store,
    teachers: list[str],
    data_rel: str,
    cfg: SamplingConfig,
    length: int,
    key: str,
    workers: int | None = None,
) -> DataRef:
    ray_ready()
    rel = layout("data", key=key)
    if not store.has(rel):  # committed by an earlier attempt whose result Prefect did not record
        sequences = sample_sequences(store, teachers, data_rel, cfg, length, workers)
        corpus = store.manifest(data_rel).meta
        save_synthetic(
            store,
            rel,
            sequences,
            corpus,
            val_fraction=SYNTHETIC_VAL_FRACTION,
            meta={
                "source": f"sampled from {len(teachers)} teacher(s)",
                "teachers": teachers,
                "corpus": data_rel,
                "sampling": cfg.model_dump(),
            },
            tokenizer_json=store.read(data_rel, "tokenizer.json").decode()
            if corpus.get("tokenizer_file")
            else None,
        )
    return data_ref(store, rel)


def sample(
    store: Store,
    teachers: list[str],
    data_rel: str,
    cfg: SamplingConfig,
    length: int,
    refresh: bool = False,
    workers: int | None = None,
) -> DataRef:
    """Synthetic sequences of `length` tokens from the teachers, cached by everything that shapes them."""
    key = step_key(
        __name__, teachers=teachers, corpus=data_rel, sampling=key_dict(cfg), length=length, what="synthetic"
    )
    return cached(sample_task, store, refresh)(
        store, teachers, data_rel, cfg, length, key=key, workers=workers
    )


# ----------------------------------------------------------------------------- the test split


@task(name="test-eval", retries=1)
def test_eval_task(store: Store, runs: list[str], data_rel: str, how: str, key: str) -> dict:
    return run_on_worker("test_windows", store, runs, data_rel, how)


def test_eval(store: Store, runs: list[str], data_rel: str, how: str = "logits"):
    """A future of the test-split loss (and bits per byte) of one run or of the ensemble of several, with
    the loss of every test window (for bootstrap intervals). The only place the test split is read."""
    if not runs:
        raise ValueError("test_eval needs at least one run")
    key = step_key(__name__, runs=runs, data=data_rel, how=how, what="test_windows")
    return cached(test_eval_task, store).submit(store, runs, data_rel, how, key=key)
