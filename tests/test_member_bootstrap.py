"""The member bootstrap of the loss-vs-members curve (asymptote.member_bootstrap): exact bookkeeping of
the redrawn U-statistic, and the verdict it gives on synthetic members whose truth is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from asymptote.member_bootstrap import (
    MemberBootstrapError,
    curve_draws,
    falls_probability,
    multiset_key,
    multisets,
    u_curve,
    window_weights,
)

K, WINDOWS, CLASSES = 4, 64, 6


def _ensemble_losses(seed: int, spread: float) -> dict[str, np.ndarray]:
    """Members = truth + independent logit noise of `spread`; per-window cross-entropy of the
    logit-averaged ensemble of every multiset. Averaging cancels noise, so the loss truly falls in k."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, (WINDOWS, 8))
    truth = 2.0 * np.eye(CLASSES)[y]
    logits = [truth + rng.normal(0.0, spread, truth.shape) for _ in range(K)]

    def loss(z):
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return -np.take_along_axis(logp, y[..., None], -1)[..., 0].mean(-1)  # one loss per window

    return {multiset_key(m): loss(np.mean([logits[i] for i in m], axis=0)) for m in multisets(K)}


def _flat_losses(seed: int) -> dict[str, np.ndarray]:
    """No ensemble gain: a multiset's loss is the mean of its members' own (different) losses, plus a
    little evaluation noise, so the true curve is flat in k."""
    rng = np.random.default_rng(seed)
    own = rng.normal(2.8, 0.04, (K, WINDOWS))
    return {
        multiset_key(m): own[list(m)].mean(axis=0) + rng.normal(0.0, 0.002, WINDOWS) for m in multisets(K)
    }


def _p(losses: dict, seed: int = 0) -> float:
    from asymptote.scaling_analysis import Noise, SizeData, StudyData, _ensembles
    from asymptote.scaling_config import FitConfig

    blocks = [1] * WINDOWS
    size = SizeData(
        label="s",
        params=1000,
        standard=[3.0, 3.01],
        regularized=[3.0, 3.01],
        members=[float(np.mean(losses[str(i)])) for i in range(K)],
        multisets={k: list(map(float, v)) for k, v in losses.items()},
        windows=blocks,
    )
    cfg = FitConfig(n_boot=1000, seed=seed)
    data = StudyData(sizes=[size], base_budget=1000)
    return _ensembles(data, Noise(data, cfg), cfg).p_direction


def test_multisets_and_redrawn_u_statistic_bookkeeping():
    assert len(multisets(4)) == 69 and len(multisets(3)) == 19  # C(2K, K) - 1
    losses = {multiset_key(m): float(len(set(m)) + 0.1 * len(m)) for m in multisets(3)}
    # a redraw of three distinct members is the data itself: its U-statistic is the measured curve
    measured = u_curve(losses, 3)
    assert measured == pytest.approx([1.1, 2.2, 3.3])
    draws = curve_draws(losses, 3, 4000, np.random.default_rng(0))
    distinct = np.isclose(draws, measured).all(axis=1)
    assert distinct.mean() == pytest.approx(6 / 27, abs=0.03)  # 3! of 3^3 redraws repeat no member
    assert np.allclose(draws[:, 0], 1.1)  # a single member's loss does not depend on which member
    with pytest.raises(MemberBootstrapError, match="every multiset"):
        curve_draws({k: v for k, v in losses.items() if k != "0,0,1"}, 3, 10, np.random.default_rng(0))


def test_window_weights_redraw_blocks_in_proportion_to_their_windows():
    blocks = np.array([14] * 30 + [13] * 34)  # what 862 windows in 64 contiguous blocks look like
    w = window_weights(blocks, 20_000, np.random.default_rng(0))
    assert np.allclose(w.sum(axis=1), 1.0)
    assert w.mean(axis=0) == pytest.approx(blocks / blocks.sum(), rel=0.05)
    counts = w / blocks * blocks.sum()  # each block's redraw count, about 1 on average
    assert counts.mean() == pytest.approx(1.0, abs=0.01) and counts.var() == pytest.approx(1.0, abs=0.1)


def test_member_bootstrap_detects_a_true_decrease_and_not_a_flat_curve():
    """Synthetic members whose ensembles truly improve with k: p >= 0.95 in each of five studies.
    Members with no ensemble gain (a flat true curve): p < 0.95 in each."""
    for seed in range(5):
        falling = _ensemble_losses(seed, spread=2.0)
        curve = u_curve(falling, K)
        assert all(b < a for a, b in itertools.pairwise(curve))
        assert _p(falling, seed) >= 0.95
        assert _p(_flat_losses(seed), seed) < 0.95


def test_falls_probability_counts_ties_as_not_falling():
    steps, together = falls_probability(np.array([[3.0, 2.0, 1.0], [2.0, 2.0, 1.0]]))
    assert steps.tolist() == [0.5, 1.0] and together == 0.5
