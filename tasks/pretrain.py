"""Prefect tasks shared by every method: prepare data, train a run, evaluate a run.

Each is retried, and cached in the artifact store under a key our own code computes (see caching.py).
The work itself happens in pure modules (asymptote.shards, asymptote.job) or on Ray (infra.launch).
"""

from __future__ import annotations

from typing import Any

from prefect import task

from asymptote.config import DataConfig
from asymptote.infra.cluster import gpu_if_any, ray_ready
from asymptote.infra.launch import launch
from asymptote.infra.remotes import remote
from asymptote.infra.tracking import log_evaluation
from asymptote.job_spec import TrainJob
from asymptote.refs import DataRef, RunRef, data_ref
from asymptote.shards import corpus_key
from asymptote.store import Store, layout
from asymptote.tasks.caching import cached, run_cached
from asymptote.tasks.tokenize import tokenize_corpus
from asymptote.versioning import step_key


@task(name="prepare-data", retries=2, retry_delay_seconds=5)
def prepare_data_task(data: DataConfig, store: Store, key: str) -> DataRef:
    rel, _ = tokenize_corpus(data, store, store.options)
    return data_ref(store, rel)


@task(name="train", retries=1, retry_delay_seconds=10)
def train_task(job: TrainJob, key: str, fresh: bool = False) -> RunRef:
    store = Store(job.store)
    if fresh:  # a forced recompute must not find the old artifact or resume its checkpoints
        store.rm(job.run_rel)
    summary = launch(job)
    return run_ref(store, job.key, job.name, summary)


def run_ref(store: Store, key: str, name: str, summary: dict[str, Any]) -> RunRef:
    rel = layout("run", key=key)
    return RunRef(
        key=key,
        name=name,
        rel=rel,
        uri=store.uri(rel),
        weights_uri=store.uri(rel, "model.safetensors"),
        summary=summary,
    )


def prepare_data(
    data: DataConfig, store: Store, refresh: bool = False, states: dict | None = None
) -> DataRef:
    """Tokenised shards of the source (a Ray Data job), cached by the source's content and the
    tokenisation settings."""
    key = corpus_key(data, store.options)
    return run_cached(prepare_data_task, store, data, store, key=key, refresh=refresh, states=states)


def train(job: TrainJob, refresh: bool = False, states: dict | None = None) -> RunRef:
    """Run (or reuse) a training job; cached by the job's key. `states` records Completed/Cached."""
    return run_cached(
        train_task, Store(job.store), job, key=job.key, fresh=refresh, refresh=refresh, states=states
    )


def submit_train(job: TrainJob, refresh: bool = False):
    """Like train(), but returns a Prefect future so several runs share the cluster concurrently."""
    return cached(train_task, Store(job.store), refresh).submit(job, key=job.key, fresh=refresh)


# ----------------------------------------------------------------------------- evaluation


def _evaluate_remote(store: Store, run_rel: str, data_rel: str) -> dict[str, float]:
    """Loss, bits per token and bits per byte on validation and, when the corpus has one, test."""
    from asymptote.job import evaluate_run  # torch: imported in the Ray worker, never by the driver

    return evaluate_run(store, run_rel, data_rel)


@task(name="evaluate", retries=1)
def evaluate_task(store: Store, run_rel: str, data_rel: str, key: str) -> dict[str, float]:
    import ray

    ray_ready()
    task = remote(_evaluate_remote, num_cpus=1).options(**gpu_if_any())
    metrics = ray.get(task.remote(store, run_rel, data_rel))
    log_evaluation(store.cfg, run_rel.split("/")[-1], metrics)  # onto the run's MLflow run, if tracked
    return metrics


def evaluate(
    store: Store, run: RunRef, data: DataRef, refresh: bool = False, states: dict | None = None
) -> dict[str, float]:
    """Full validation and test loss (nats/token, bits/token, bits/byte) of a run's weights on a corpus
    (any corpus, not only its own)."""
    key = step_key(__name__, run=run.rel, data=data.rel, what="val_test_loss_bpb")
    return run_cached(evaluate_task, store, store, run.rel, data.rel, key=key, refresh=refresh, states=states)
