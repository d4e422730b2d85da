"""Per-block test losses of every weighted ensemble of a few members: what the member bootstrap reads.

`asymptote.member_bootstrap` redraws members with replacement, so it needs the loss of ensembles that
name a member twice ("0,0,2": member 0's logits weighted 2/3, member 2's 1/3), and it redraws the test
text, so it needs losses per piece of text. The evaluation windows (non-overlapping, contiguous) are
grouped into contiguous blocks: resampling blocks of consecutive text keeps the local correlation of
neighbouring windows inside a block, and the result stays small (multisets x blocks numbers).
All members are held at once; each member's forward pass runs once per batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from asymptote.data import eval_windows, windows_to_batch
from asymptote.member_bootstrap import MAX_MULTISET_MEMBERS, multiset_key, multisets

TEST_BLOCKS = 64
"""Contiguous blocks of test windows the bootstrap resamples (fewer when there are fewer windows)."""


@torch.no_grad()
def multiset_losses(
    models: Sequence[torch.nn.Module],
    tokens: np.ndarray,
    block: int,
    n_blocks: int = TEST_BLOCKS,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict:
    """{"windows": windows per block, "losses": {multiset key: mean loss per block}} of the
    logit-averaged ensemble of every multiset of 1..K members.

    The window-weighted mean of a key's block losses is that ensemble's loss on the whole split (for a
    key without repeats, `asymptote.scaling.subset_losses`'s value)."""
    k = len(models)
    if not 1 <= k <= MAX_MULTISET_MEMBERS:
        raise ValueError(f"{k} members: the member bootstrap supports 1..{MAX_MULTISET_MEMBERS}")
    sets = multisets(k)
    weights = torch.zeros(len(sets), k, device=device)
    for row, m in enumerate(sets):
        for i in m:
            weights[row, i] += 1.0 / len(m)
    starts = eval_windows(len(tokens), block)
    per_window = []
    for i in range(0, len(starts), batch_size):
        x, y = windows_to_batch(tokens, starts[i : i + batch_size], block)
        z = torch.stack([m(x.to(device)).float() for m in models])  # (K, B, T, V)
        y = y.to(device)
        rows = [
            F.cross_entropy(torch.einsum("k,kbtv->btv", w, z).transpose(1, 2), y, reduction="none").mean(1)
            for w in weights
        ]
        per_window.append(torch.stack(rows).double().cpu().numpy())  # (M, B)
    return block_means(np.concatenate(per_window, axis=1), [multiset_key(m) for m in sets], n_blocks)


def block_means(per_window: np.ndarray, keys: list[str], n_blocks: int = TEST_BLOCKS) -> dict:
    """Group (M, W) per-window losses into contiguous blocks: window counts and per-block means."""
    chunks = np.array_split(np.arange(per_window.shape[1]), min(n_blocks, per_window.shape[1]))
    means = np.stack([per_window[:, c].mean(axis=1) for c in chunks], axis=1)
    return {
        "windows": [len(c) for c in chunks],
        "losses": {key: means[row].tolist() for row, key in enumerate(keys)},
    }
