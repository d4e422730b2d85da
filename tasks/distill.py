"""Prefect tasks for distillation: sample synthetic text on every Ray worker, evaluate an ensemble, plot.

Sampling cuts the run into seeded chunks (asymptote.sampling) and deals them round-robin to one Ray
task per free CPU (or per GPU), each loading the teachers once; the driver stitches the chunks back
in order and commits them as a data artifact in the shards format. Because a chunk's tokens depend
only on its seed, the artifact is the same whatever the number of workers, so its cache key leaves
the worker count out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task

from asymptote.config import key_dict
from asymptote.distill_config import SYNTHETIC_VAL_FRACTION, SamplingConfig
from asymptote.infra.cluster import cluster_has_gpus, gpu_if_any, ray_ready
from asymptote.infra.remotes import remote
from asymptote.refs import DataRef, data_ref
from asymptote.store import Store, layout
from asymptote.tasks.caching import cached
from asymptote.versioning import step_key

# What a sampling run executes beyond the core modules: editing other methods never invalidates samples.


def _sample_share(
    store: Store,
    teachers: list[str],
    data_rel: str,
    spec: dict,
    length: int,
    chunks: list[int],
    use_gpu: bool,
) -> list[np.ndarray]:
    import torch

    from asymptote.job import model_from_run
    from asymptote.sampling import sample_chunk
    from asymptote.shards import load_dataset

    torch.set_num_threads(1)
    device = torch.device("cuda" if use_gpu else "cpu")
    cfg = SamplingConfig.model_validate(spec)
    models = [model_from_run(store, rel, device) for rel in teachers]  # once per worker, for all its chunks
    train, _, _ = load_dataset(store, data_rel)
    return [sample_chunk(models, train, cfg, c, length, device) for c in chunks]


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
    n_workers, use_gpu = sampling_workers(cfg.n_chunks())
    n_workers = workers or n_workers
    shares = [list(range(w, cfg.n_chunks(), n_workers)) for w in range(n_workers)]
    import ray

    fn = remote(_sample_share).options(num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=2)
    results = ray.get(
        [fn.remote(store, teachers, data_rel, cfg.model_dump(), length, s, use_gpu) for s in shares]
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
    from asymptote.distill import save_synthetic

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


def _test_eval_remote(store: Store, runs: list[str], data_rel: str, how: str) -> dict:
    import torch

    from asymptote.ensemble import window_losses
    from asymptote.evaluation import loss_metrics, split_bytes_per_token
    from asymptote.job import model_from_run
    from asymptote.shards import load_meta, load_split

    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # Ray shows only assigned GPUs
    tokens = load_split(store, data_rel, "test")
    block = store.manifest(runs[0]).meta["model"]["block_size"]
    windows = window_losses(
        lambda i: model_from_run(store, runs[i], device), len(runs), tokens, block, how, device=device
    )
    metrics = loss_metrics(
        float(windows.mean()), split_bytes_per_token(load_meta(store, data_rel), "test"), "test"
    )
    return metrics | {"windows": windows.tolist()}


@task(name="test-eval", retries=1)
def test_eval_task(store: Store, runs: list[str], data_rel: str, how: str, key: str) -> dict:
    import ray

    ray_ready()
    fn = remote(_test_eval_remote, num_cpus=1).options(**gpu_if_any())
    return ray.get(fn.remote(store, runs, data_rel, how))


def test_eval(store: Store, runs: list[str], data_rel: str, how: str = "logits"):
    """A future of the test-split loss (and bits per byte) of one run or of the ensemble of several, with
    the loss of every test window (for bootstrap intervals). The only place the test split is read."""
    if not runs:
        raise ValueError("test_eval needs at least one run")
    key = step_key(__name__, runs=runs, data=data_rel, how=how, what="test_windows")
    return cached(test_eval_task, store).submit(store, runs, data_rel, how, key=key)


def run_curve(store: Store, rel: str) -> list[tuple[int, float]]:
    """(step, validation loss) of every evaluation a committed run made: its learning curve."""
    import json

    lines = store.read(rel, "metrics.jsonl").decode().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [(int(r["step"]), float(r["val_loss"])) for r in records if r.get("val_loss") is not None]


def plot_curves(
    curves: dict[str, list[tuple[int, float]]], refs: dict[str, float], path: str | Path, title: str
) -> None:
    """Validation loss against step of each student, with the single model's and the ensemble's losses drawn."""
    from asymptote.plots import plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for name, curve in curves.items():
        if curve:
            steps, losses = zip(*curve, strict=True)
            ax.plot(steps, losses, marker=".", label=name)
    for (name, value), color in zip(refs.items(), ("tab:gray", "tab:green"), strict=False):
        ax.axhline(value, color=color, ls="--", lw=1, label=name)
    ax.set(xlabel="student step", ylabel="validation loss (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- the comparison plot


def plot_comparison(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Test loss of the single model, the ensemble and each student, with both references drawn."""
    from asymptote.plots import plt  # matplotlib configured headless there

    names, losses = [r["model"] for r in rows], [r["test_loss"] for r in rows]
    colors = [
        "tab:gray" if r["kind"] == "single" else "tab:green" if r["kind"] == "ensemble" else "tab:blue"
        for r in rows
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows)), 4), dpi=110)
    ax.bar(names, losses, color=colors)
    for r in rows:
        if r["kind"] in ("single", "ensemble"):
            ax.axhline(
                r["test_loss"], color="tab:gray" if r["kind"] == "single" else "tab:green", ls="--", lw=1
            )
    spread = max(losses) - min(losses)
    ax.set_ylim(min(losses) - max(spread, 0.01), max(losses) + 0.5 * max(spread, 0.01))
    ax.set(ylabel="test loss (nats/token)", title=title)
    ax.tick_params(axis="x", rotation=20)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_params(store: Store, rel: str) -> int:
    """Parameter count of a committed run's model, from its manifest (no weights read)."""
    from asymptote.config import ModelConfig
    from asymptote.flops import param_count

    return param_count(ModelConfig.model_validate(store.manifest(rel).meta["model"]))
