"""Ensembles of independently trained members, evaluated without holding them all in memory.

Two ways to combine K members' next-token predictions:
- logit averaging (the paper's choice): softmax(mean_k z_k)
- probability averaging: mean_k softmax(z_k)
`stream_eval` loads one member at a time and keeps only the running sums over the evaluation
windows, so peak memory is about one member plus the accumulators, however large K is.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from asymptote.data import eval_windows, windows_to_batch

COMBINE = ("logits", "probs")


def combine(logits: Sequence[torch.Tensor], how: str = "logits") -> torch.Tensor:
    """Log-probabilities of the ensemble from member logits (each (..., vocab))."""
    stacked = torch.stack([z.float() for z in logits])
    if how == "logits":
        return F.log_softmax(stacked.mean(0), dim=-1)
    if how == "probs":
        return torch.logsumexp(F.log_softmax(stacked, dim=-1), dim=0) - math.log(len(logits))
    raise ValueError(f"combine={how!r}: unknown; allowed: {', '.join(COMBINE)}")


class Ensemble(nn.Module):
    """Members in memory, as one model whose output is the combined log-probabilities (a teacher)."""

    def __init__(self, members: Iterable[nn.Module], how: str = "logits"):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.how = how
        self.cfg = self.members[0].cfg

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return combine([m(idx) for m in self.members], self.how)


@torch.no_grad()
def stream_eval(
    load: Callable[[int], nn.Module],
    n_members: int,
    tokens: np.ndarray,
    block: int,
    max_windows: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, list[float]]:
    """Losses of each member and of the first-k ensembles (k = 1..n) under both combinations.

    `load(i)` returns member i; it is called once per member and the member is dropped before the
    next is loaded. Accumulators hold, per evaluation token, the running sum of logits and of
    probabilities.
    """
    starts = eval_windows(len(tokens), block, max_windows)
    batches = [
        windows_to_batch(tokens, starts[i : i + batch_size], block) for i in range(0, len(starts), batch_size)
    ]
    logit_sum = [None] * len(batches)
    prob_sum = [None] * len(batches)
    out = {"member": [], "logits": [], "probs": []}
    for k in range(1, n_members + 1):
        model = load(k - 1)
        nll = {"member": 0.0, "logits": 0.0, "probs": 0.0}
        count = 0
        for b, (x, y) in enumerate(batches):
            z = model(x.to(device)).float()
            y = y.to(device)
            logit_sum[b] = z if logit_sum[b] is None else logit_sum[b] + z
            p = F.softmax(z, dim=-1)
            prob_sum[b] = p if prob_sum[b] is None else prob_sum[b] + p
            nll["member"] += F.cross_entropy(z.view(-1, z.size(-1)), y.reshape(-1), reduction="sum").item()
            avg = (logit_sum[b] / k).view(-1, z.size(-1))
            nll["logits"] += F.cross_entropy(avg, y.reshape(-1), reduction="sum").item()
            probs = (prob_sum[b] / k).view(-1, z.size(-1)).clamp_min(1e-30)
            nll["probs"] += F.nll_loss(probs.log(), y.reshape(-1), reduction="sum").item()
            count += y.numel()
        del model
        for name, total in nll.items():
            out[name].append(total / count)
    return out


@torch.no_grad()
def window_losses(
    load: Callable[[int], nn.Module],
    n_members: int,
    tokens: np.ndarray,
    block: int,
    how: str = "logits",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Mean next-token loss of the n-member ensemble (one model when n = 1) on each evaluation window.

    The windows are evaluation.mean_loss's (same count of tokens each), so the mean of this array is
    that loss; the per-window values are what a bootstrap over test windows resamples. Members stream
    through memory one at a time, as in stream_eval.
    """
    starts = eval_windows(len(tokens), block)
    batches = [
        windows_to_batch(tokens, starts[i : i + batch_size], block) for i in range(0, len(starts), batch_size)
    ]
    sums: list[torch.Tensor | None] = [None] * len(batches)
    for k in range(n_members):
        model = load(k)
        for b, (x, _) in enumerate(batches):
            z = model(x.to(device)).float()
            z = z if how == "logits" else F.softmax(z, dim=-1)
            sums[b] = z if sums[b] is None else sums[b] + z
        del model
    out = []
    for total, (_, y) in zip(sums, batches, strict=True):
        logprobs = combined_logprobs(total / n_members, how)
        nll = F.nll_loss(logprobs.transpose(1, 2), y.to(device), reduction="none")
        out.append(nll.mean(1).double().cpu().numpy())
    return np.concatenate(out)


def combined_logprobs(mean: torch.Tensor, how: str) -> torch.Tensor:
    """Log-probabilities from the members' mean logits (how=logits) or mean probabilities (how=probs)."""
    if how == "logits":
        return F.log_softmax(mean, dim=-1)
    if how == "probs":
        return mean.clamp_min(1e-30).log()
    raise ValueError(f"combine={how!r}: unknown; allowed: {', '.join(COMBINE)}")
