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
