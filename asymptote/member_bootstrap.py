"""Bootstrap of an ensemble's loss-vs-members curve by resampling the members (and the test windows).

The loss at k members is a U-statistic: the mean, over every k-subset of the K trained members, of the
loss of that subset's ensemble. What varies from one study to the next is which members training
happened to produce (and which text the test split happened to hold), so the bootstrap redraws those:
K members with replacement from the K trained ones, then the U-statistic of the redrawn list at every
k. A k-subset of the redrawn list's positions can name a member twice; its ensemble is then a
weighted one ({0, 0, 2}: member 0's logits count twice), so the evaluation supplies the loss of every
multiset of members up to size K (keys "0,0,2"; a plain subset is a multiset without repeats).

With per-window losses, one draw also reweights the test windows (multinomial counts), and the same
window counts can be shared by every size of a study: the test split is the same text for all of them.

Pure numpy.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np

MIN_BOOTSTRAP_MEMBERS = 4  # K = 3 has 10 distinct redraws, K = 2 only 3: too few to measure member variation
MAX_MULTISET_MEMBERS = 6  # C(12, 6) - 1 = 923 weighted ensembles; beyond that the bootstrap is not offered


class MemberBootstrapError(ValueError):
    """The losses given cannot support a member bootstrap (a multiset it needs is missing)."""


def multiset_key(members: Sequence[int]) -> str:
    return ",".join(str(i) for i in sorted(members))


def multisets(n_members: int) -> list[tuple[int, ...]]:
    """Every multiset of 1..K members drawn from K (sorted index tuples): C(2K, K) - 1 of them."""
    k_max = n_members
    return [
        m for k in range(1, k_max + 1) for m in itertools.combinations_with_replacement(range(n_members), k)
    ]


def _counts(keys: Sequence[str], n_members: int) -> np.ndarray:
    """(M, K) member counts of each multiset key."""
    out = np.zeros((len(keys), n_members), dtype=int)
    for row, key in enumerate(keys):
        for i in key.split(","):
            out[row, int(i)] += 1
    return out


def u_curve(
    losses: Mapping[str, Sequence[float] | float], n_members: int, windows: Sequence[int] | None = None
) -> np.ndarray:
    """The measured curve: at each k the mean loss over the k-subsets of distinct members (per-block
    losses averaged with their window counts as weights)."""

    def loss(key: str) -> float:
        v = np.atleast_1d(np.asarray(losses[key], dtype=float))
        return float(np.average(v, weights=windows if windows is not None and len(v) > 1 else None))

    by_k = [
        [loss(multiset_key(s)) for s in itertools.combinations(range(n_members), k)]
        for k in range(1, n_members + 1)
    ]
    return np.array([np.mean(v) for v in by_k])


def _coefficients(draws: np.ndarray, counts: np.ndarray, n_members: int) -> np.ndarray:
    """(B, M) weight of each multiset in the U-statistic of each redrawn member list.

    A redrawn list with member counts r has prod_i C(r_i, m_i) k-subsets of positions that name
    multiset m (Vandermonde: they add up to C(K, k) over the multisets of size k)."""
    comb = np.array([[math.comb(n, j) for j in range(n_members + 1)] for n in range(n_members + 1)])
    coef = np.ones((len(draws), len(counts)))
    for i in range(n_members):
        coef *= comb[draws[:, i][:, None], counts[None, :, i]]
    sizes = counts.sum(axis=1)
    return coef / np.array([math.comb(n_members, k) for k in sizes])[None, :]


def window_weights(windows: Sequence[int], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, W) resampling weights of W test blocks holding windows[j] windows each: blocks redrawn with
    replacement (multinomial counts c_j), block j weighted c_j * windows[j], each row summing to 1."""
    n = np.asarray(windows, dtype=float)
    counts = rng.multinomial(len(n), np.full(len(n), 1.0 / len(n)), size=n_boot) * n[None, :]
    return counts / counts.sum(axis=1, keepdims=True)


def curve_draws(
    losses: Mapping[str, Sequence[float] | float],
    n_members: int,
    n_boot: int,
    rng: np.random.Generator,
    windows: np.ndarray | None = None,
) -> np.ndarray:
    """(B, K) bootstrap draws of the loss-vs-members curve: members redrawn with replacement, and
    (when `windows`, a (B, W) matrix from `window_weights`, is given and losses are per block) the
    test blocks reweighted; a (1, W) matrix of the blocks' own weights keeps the test text fixed.
    Without `windows`, per-block losses enter as their plain mean.

    `losses` maps every multiset key of 1..K members to its loss (a number, or one per test block)."""
    keys = [multiset_key(m) for m in multisets(n_members)]
    missing = [k for k in keys if k not in losses]
    if missing:
        raise MemberBootstrapError(
            f"the member bootstrap needs the loss of every multiset of members ({len(keys)} for "
            f"K={n_members}); missing e.g. {missing[:3]} (evaluate weighted ensembles: "
            "asymptote.scaling.multiset_losses)"
        )
    table = np.array([np.atleast_1d(np.asarray(losses[k], dtype=float)) for k in keys])  # (M, W)
    if windows is not None and table.shape[1] == windows.shape[1]:
        resampled = np.broadcast_to(windows @ table.T, (n_boot, len(keys)))  # (B or 1, M) -> (B, M)
    else:
        resampled = np.broadcast_to(table.mean(axis=1), (n_boot, len(keys)))
    picks = rng.integers(0, n_members, size=(n_boot, n_members))
    draws = np.stack([np.bincount(row, minlength=n_members) for row in picks])
    counts = _counts(keys, n_members)
    weighted = _coefficients(draws, counts, n_members) * resampled
    size = counts.sum(axis=1)
    return np.stack([weighted[:, size == k].sum(axis=1) for k in range(1, n_members + 1)], axis=1)


def falls_probability(draws: np.ndarray) -> tuple[np.ndarray, float]:
    """Per step k -> k+1, the fraction of draws where the loss falls; and the fraction where it falls
    at every step at once. A redraw of one member K times gives a flat curve (counted as not falling)."""
    steps = np.diff(draws, axis=1) < 0
    return steps.mean(axis=0), float(np.all(steps, axis=1).mean())
