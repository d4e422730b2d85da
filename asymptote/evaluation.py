"""Validation loss of anything that maps tokens to logits: one model, an ensemble, a soup.

Windows are non-overlapping and deterministic; ranks share them out and sum (loss x tokens, tokens)
so the mean is exact whatever the number of workers.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch

from asymptote.data import eval_windows, to_device, windows_to_batch
from asymptote.dist import DistEnv
from asymptote.model import lm_loss

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def mean_loss(
    logits_fn: LogitsFn,
    tokens: np.ndarray,
    block: int,
    env: DistEnv | None = None,
    max_windows: int | None = None,
    batch_size: int = 64,
    dtype: torch.dtype | None = None,
) -> float:
    """Mean next-token cross-entropy (nats/token) of logits_fn over the windows of tokens."""
    env = env or DistEnv()
    starts = eval_windows(len(tokens), block, max_windows)[env.rank :: env.world]
    sums = torch.zeros(2, dtype=torch.float64, device=env.device)
    cast = torch.autocast(env.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    for i in range(0, len(starts), batch_size):
        x, y = windows_to_batch(tokens, starts[i : i + batch_size], block)
        x, y = to_device(x, env.device), to_device(y, env.device)
        with cast:
            loss = lm_loss(logits_fn(x), y)
        sums[0] += loss.double() * y.numel()
        sums[1] += y.numel()
    sums = env.sum(sums)
    if sums[1] == 0:
        raise ValueError(f"{len(tokens)} validation tokens cannot fill one window of block_size={block}")
    return float(sums[0] / sums[1])


def bits_per_token(nats: float) -> float:
    return nats / float(np.log(2))


def bits_per_byte(nats: float, bytes_per_token: float) -> float:
    """Bits per byte of text: comparable across tokenizers, unlike a per-token loss.

    bytes_per_token is the split's UTF-8 bytes over its tokens (a data artifact's meta records it);
    for the byte tokenizer it is 1, and bits per byte equals bits per token.
    """
    if not bytes_per_token or bytes_per_token <= 0:
        raise ValueError(f"bytes_per_token={bytes_per_token}: need the split's bytes per token (> 0)")
    return bits_per_token(nats) / bytes_per_token


def loss_metrics(nats: float, bytes_per_token: float, prefix: str) -> dict[str, float]:
    """{prefix_loss (nats/token), prefix_bits_per_token, prefix_bpb}: a loss never goes without its bpb."""
    return {
        f"{prefix}_loss": nats,
        f"{prefix}_bits_per_token": bits_per_token(nats),
        f"{prefix}_bpb": bits_per_byte(nats, bytes_per_token),
    }


def split_bytes_per_token(meta: dict, split: str) -> float:
    """Bytes per token of a split from a data artifact's meta; 1.0 for byte-tokenized artifacts
    written before meta recorded it (their tokens are the bytes)."""
    recorded = (meta.get("bytes_per_token") or {}).get(split)
    if recorded:
        return float(recorded)
    if meta.get("tokenizer") == "byte":
        return 1.0
    raise ValueError(f"the data artifact records no bytes per token for its {split} split")


def evaluate_split(
    logits_fn: LogitsFn, tokens: np.ndarray, meta: dict, split: str, block: int, **kw
) -> dict[str, float]:
    """Loss, bits per token and bits per byte of logits_fn on one split of a data artifact."""
    return loss_metrics(mean_loss(logits_fn, tokens, block, **kw), split_bytes_per_token(meta, split), split)
