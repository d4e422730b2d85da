"""Text -> tokens -> batches in a reproducible epoch order.

Pure numpy/torch and fsspec: no Ray, no Prefect. Formats and splits live in asymptote.corpus,
tokenizers in asymptote.tokenizer, token shards in asymptote.shards; `read_source` and
`split_tokens` remain for callers that hold one text in memory (nanoGPT's positional split).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import numpy as np
import torch

from asymptote.corpus import BUILTIN_SOURCES, _python_docs
from asymptote.tokenizer import ByteTokenizer

__all__ = ["BUILTIN_SOURCES", "ByteTokenizer", "read_source", "get_tokenizer", "split_tokens"]

# ----------------------------------------------------------------------------- reading text


def read_source(source: str, storage_options: dict | None = None) -> bytes:
    """Bytes of a text file, of every .txt file under a folder (sorted), of a URI, or a builtin."""
    if source in BUILTIN_SOURCES:
        return _python_docs()
    if source.startswith("builtin:"):
        raise ValueError(f"data.source={source!r}: unknown builtin; allowed: {', '.join(BUILTIN_SOURCES)}")
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    if not fs.exists(path):
        raise FileNotFoundError(f"data.source={source!r} does not exist; give a text file, a folder or a URI")
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.endswith(".txt"))
        if not files:
            raise ValueError(f"data.source={source!r} is a folder without .txt files")
        return b"\n".join(fs.cat_file(p) for p in files)
    return fs.cat_file(path)


# ----------------------------------------------------------------------------- tokenizers

TOKENIZERS = {"byte": ByteTokenizer}


def get_tokenizer(name: str):
    if name not in TOKENIZERS:
        raise ValueError(f"data.tokenizer={name!r}: unknown; allowed: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]()


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train = the first (1 - val_fraction) of the tokens, validation = the rest."""
    n_train = int(len(tokens) * (1 - val_fraction))
    return tokens[:n_train], tokens[n_train:]


# ----------------------------------------------------------------------------- batching


def epoch_windows(n_tokens: int, block: int, data_seed: int, epoch: int) -> np.ndarray:
    """Start offsets of this epoch's training windows, in this epoch's order.

    A function of (data_seed, epoch) only. Each epoch shifts the window grid by a seeded offset so
    that repeated epochs see the text cut at different places, then shuffles the windows.
    """
    rng = np.random.default_rng([data_seed, epoch])
    shift = int(rng.integers(0, block))
    n_windows = (n_tokens - shift - 1) // block
    if n_windows < 1:
        raise ValueError(f"{n_tokens} training tokens cannot fill one window of block_size={block}")
    return shift + block * rng.permutation(n_windows)


@dataclass
class EpochBatcher:
    """Yields (x, y) batches over `tokens`; its position is a small dict saved in checkpoints."""

    tokens: np.ndarray
    block: int
    batch_size: int  # global, across all ranks
    data_seed: int
    rank: int = 0
    world: int = 1
    epoch: int = 0
    index: int = 0  # next global batch within the epoch
    _order: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.batch_size % self.world:
            raise ValueError(
                f"train.batch_size={self.batch_size} must be divisible by num_workers={self.world}"
            )

    @property
    def windows_per_epoch(self) -> int:
        return (len(self.tokens) - 1) // self.block

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            self._order = epoch_windows(len(self.tokens), self.block, self.data_seed, self.epoch)
        return self._order

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = self._epoch_order()
        if (self.index + 1) * self.batch_size > len(order):  # drop the ragged tail, start the next epoch
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
            order = self._epoch_order()
        rows = order[self.index * self.batch_size : (self.index + 1) * self.batch_size]
        per_rank = self.batch_size // self.world
        starts = rows[self.rank * per_rank : (self.rank + 1) * per_rank]
        self.index += 1
        return windows_to_batch(self.tokens, starts, self.block)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "data_seed": self.data_seed}

    def load_state_dict(self, state: dict) -> None:
        if state["data_seed"] != self.data_seed:
            raise ValueError("checkpoint was written with another data_seed")
        self.epoch, self.index, self._order = state["epoch"], state["index"], None


def windows_to_batch(tokens: np.ndarray, starts, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = np.stack([tokens[s : s + block + 1] for s in starts]).astype(np.int64)
    t = torch.from_numpy(chunk)
    return t[:, :-1], t[:, 1:]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on `device` without stalling the host.

    `.to("cuda", non_blocking=True)` from ordinary (pageable) memory is not asynchronous: the copy
    waits for the GPU to drain the work already queued, so the host cannot queue step k+1 while
    step k runs and the GPU idles for the host's launch time every step. From page-locked memory
    the copy is queued like a kernel. Batches are views (x = chunk[:, :-1]); the staging copy makes
    them contiguous on the host, else the copy would make a pageable contiguous temporary first.
    """
    if device.type != "cuda":
        return t.to(device)
    staged = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    staged.copy_(t)
    return staged.to(device, non_blocking=True)  # the pinned block is reused only after the copy ends


def eval_windows(n_tokens: int, block: int, max_windows: int | None = None) -> np.ndarray:
    """Non-overlapping validation windows; with a cap, evenly spaced across the whole split."""
    starts = np.arange((n_tokens - 1) // block) * block
    if max_windows is not None and max_windows < len(starts):
        starts = starts[np.linspace(0, len(starts) - 1, max_windows).round().astype(int)]
    return starts


def steps_for(n_train_tokens: int, block: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    """Optimiser steps for a run: max_steps if given, else epochs over the windows."""
    if max_steps:
        return max_steps
    per_epoch = ((n_train_tokens - 1) // block) // batch_size
    if per_epoch < 1:
        raise ValueError(f"{n_train_tokens} tokens do not fill one batch of {batch_size} x {block}")
    return max(1, round(epochs * per_epoch))
