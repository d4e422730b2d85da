"""What a Ray task runs on the worker it landed on: evaluating runs and their ensembles, sampling from them.

Each function loads the runs it needs from the store onto the worker's device and returns plain
lists and arrays. The tasks layer (tasks/ensembles.py, tasks/distill.py) starts them by name through
one Ray entry point, so the driver never imports this module or torch.
"""

from __future__ import annotations

import numpy as np
import torch

from asymptote.distill_config import SamplingConfig
from asymptote.ensemble import stream_eval, window_losses
from asymptote.ensemble_windows import multiset_losses
from asymptote.evaluation import loss_metrics, split_bytes_per_token
from asymptote.job import model_from_run
from asymptote.sampling import sample_chunk
from asymptote.scaling import subset_losses
from asymptote.shards import load_dataset, load_meta, load_split
from asymptote.store import Store


def _device(use_gpu: bool | None = None) -> torch.device:
    """One thread per task; the GPU when there is one (Ray shows a task only the GPUs it was assigned)."""
    torch.set_num_threads(1)
    gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    return torch.device("cuda" if gpu else "cpu")


def ensemble_losses(store: Store, runs: list[str], data_rel: str, split: str) -> dict[str, list[float]]:
    """Loss on `split` of each run and of the first-k ensembles, members streamed one at a time."""
    device = _device()
    tokens = load_split(store, data_rel, split)
    block = store.manifest(runs[0]).meta["model"]["block_size"]
    return stream_eval(
        lambda i: model_from_run(store, runs[i], device), len(runs), tokens, block, device=device
    )


def test_windows(store: Store, runs: list[str], data_rel: str, how: str) -> dict:
    """Test loss and bits per byte of one run or of the ensemble of several, with every window's loss."""
    device = _device()
    tokens = load_split(store, data_rel, "test")
    block = store.manifest(runs[0]).meta["model"]["block_size"]
    windows = window_losses(
        lambda i: model_from_run(store, runs[i], device), len(runs), tokens, block, how, device=device
    )
    metrics = loss_metrics(
        float(windows.mean()), split_bytes_per_token(load_meta(store, data_rel), "test"), "test"
    )
    return metrics | {"windows": windows.tolist()}


def _members_here(store: Store, runs: list[str], data_rel: str, split: str):
    """(models, tokens, device): every member at once, for small K."""
    device = _device()
    models = [model_from_run(store, r, device).eval() for r in runs]
    return models, load_split(store, data_rel, split), device


def subsets(store: Store, runs: list[str], data_rel: str, split: str) -> dict[str, float]:
    """Logit-ensemble loss on `split` of every non-empty subset of the runs."""
    models, tokens, device = _members_here(store, runs, data_rel, split)
    return subset_losses(models, tokens, models[0].cfg.block_size, device=device)


def multisets(store: Store, runs: list[str], data_rel: str, split: str) -> dict:
    """Per block of windows, the logit-ensemble loss of every multiset of the runs."""
    models, tokens, device = _members_here(store, runs, data_rel, split)
    return multiset_losses(models, tokens, models[0].cfg.block_size, device=device)


def sample_share(
    store: Store,
    teachers: list[str],
    data_rel: str,
    spec: dict,
    length: int,
    chunks: list[int],
    use_gpu: bool,
) -> list[np.ndarray]:
    """The sampled sequences of this worker's chunks, the teachers loaded once for all of them."""
    device = _device(use_gpu)
    cfg = SamplingConfig.model_validate(spec)
    models = [model_from_run(store, rel, device) for rel in teachers]
    train, _, _ = load_dataset(store, data_rel)
    return [sample_chunk(models, train, cfg, c, length, device) for c in chunks]
