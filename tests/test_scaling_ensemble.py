"""Ensemble combination as the study uses it: logit averaging vs probability averaging, and the
streamed evaluation (one member in memory) against the in-memory ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asymptote.config import ModelConfig
from asymptote.ensemble import Ensemble, combine, stream_eval
from asymptote.evaluation import mean_loss
from asymptote.model import Decoder

SHAPE = ModelConfig(n_layer=1, n_head=2, d_model=16, d_ff=32, block_size=16)


def test_logit_and_probability_averaging_follow_their_definitions():
    z = [torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    by_logits = combine(z, "logits")
    by_probs = combine(z, "probs")
    assert torch.allclose(by_logits, F.log_softmax(torch.stack(z).mean(0), -1), atol=1e-6)
    assert torch.allclose(by_probs.exp(), torch.stack([F.softmax(t, -1) for t in z]).mean(0), atol=1e-6)
    assert torch.allclose(by_logits.exp().sum(-1), torch.ones(3, 5)) and torch.allclose(
        by_probs.exp().sum(-1), torch.ones(3, 5)
    )
    assert not torch.allclose(by_logits, by_probs, atol=1e-3)  # the two rules differ on disagreeing members
    same = [z[0]] * 3  # identical members: both rules give the member itself
    assert torch.allclose(combine(same, "logits"), F.log_softmax(z[0], -1), atol=1e-6)
    assert torch.allclose(combine(same, "probs"), F.log_softmax(z[0], -1), atol=1e-5)
    with pytest.raises(ValueError, match="allowed: logits, probs"):
        combine(z, "median")


def test_probability_averaging_never_loses_to_the_average_member():
    """Jensen: -log(mean p) <= mean(-log p) token by token, so the probs ensemble's loss is at most the
    members' mean loss (logit averaging carries no such guarantee)."""
    z = [torch.randn(64, 7, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    y = torch.randint(0, 7, (64,), generator=torch.Generator().manual_seed(9))
    member_mean = np.mean([F.cross_entropy(t, y).item() for t in z])
    assert F.nll_loss(combine(z, "probs"), y).item() <= member_mean + 1e-6


def test_streamed_evaluation_matches_the_in_memory_ensemble():
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(Decoder(SHAPE).eval())
    tokens = np.random.default_rng(0).integers(0, 256, 16 * 20 + 1).astype(np.uint8)
    loaded = []

    def load(i):
        loaded.append(i)
        return members[i]

    out = stream_eval(load, 3, tokens, SHAPE.block_size, batch_size=7)
    assert loaded == [0, 1, 2]  # each member loaded once, in order
    for k in (1, 2, 3):
        for how in ("logits", "probs"):
            expected = mean_loss(Ensemble(members[:k], how), tokens, SHAPE.block_size)
            assert out[how][k - 1] == pytest.approx(expected, rel=1e-5)
    assert out["member"] == pytest.approx([mean_loss(m, tokens, SHAPE.block_size) for m in members], rel=1e-5)
    assert out["logits"][0] == pytest.approx(out["member"][0], rel=1e-6)
    assert all(math.isfinite(v) for v in out["probs"])


def test_every_subset_loss_matches_the_streamed_first_k_and_single_members():
    """subset_losses: one loss per non-empty subset; singles are the members' own losses and each
    first-k subset is the streamed first-k logit ensemble."""
    from asymptote.scaling import subset_losses

    torch.manual_seed(0)
    members = [Decoder(SHAPE).eval() for _ in range(3)]
    tokens = np.random.default_rng(0).integers(0, SHAPE.vocab_size, 16 * 9 + 1)
    out = subset_losses(members, tokens, SHAPE.block_size)
    assert set(out) == {"0", "1", "2", "0,1", "0,2", "1,2", "0,1,2"}
    streamed = stream_eval(lambda i: members[i], 3, tokens, SHAPE.block_size)
    for k, key in enumerate(("0", "0,1", "0,1,2")):
        assert out[key] == pytest.approx(streamed["logits"][k], rel=1e-5)
    for i in range(3):
        assert out[str(i)] == pytest.approx(streamed["member"][i], rel=1e-5)


def test_multiset_losses_per_block_agree_with_every_subset_and_weight_repeats():
    """multiset_losses: every multiset of members per block of test windows; the window-weighted mean
    of a plain subset is subset_losses' value, and "0,0,1" is the ensemble with member 0 counted twice."""
    from asymptote.ensemble_windows import multiset_losses
    from asymptote.scaling import subset_losses

    torch.manual_seed(0)
    members = [Decoder(SHAPE).eval() for _ in range(3)]
    tokens = np.random.default_rng(0).integers(0, SHAPE.vocab_size, 16 * 9 + 1)
    out = multiset_losses(members, tokens, SHAPE.block_size, n_blocks=4)
    assert len(out["losses"]) == 19 and out["windows"] == [3, 2, 2, 2]
    for key, loss in subset_losses(members, tokens, SHAPE.block_size).items():
        assert np.average(out["losses"][key], weights=out["windows"]) == pytest.approx(loss, rel=1e-5)
    twice = Ensemble([members[0], members[0], members[1]])
    assert np.average(out["losses"]["0,0,1"], weights=out["windows"]) == pytest.approx(
        mean_loss(twice, tokens, SHAPE.block_size), rel=1e-5
    )
