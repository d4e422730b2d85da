"""Model FLOPs per token (asymptote.flops): a hand count, the model's own matrices, torch's counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from asymptote import flops
from asymptote.config import ModelConfig
from asymptote.flops import attention_flops_per_token, matmul_params, train_flops_per_token
from asymptote.model import Decoder, count_params, lm_loss
from asymptote.presets import PRESETS

TINY = ModelConfig(n_layer=2, n_head=4, n_kv_head=2, d_model=16, d_ff=24, block_size=8, vocab_size=10)


def test_hand_count_of_a_tiny_gqa_model():
    # Per layer: wq 16x16 + wk 16x8 + wv 16x8 + wo 16x16 = 768, SwiGLU 3 x 16x24 = 1152 -> 1920;
    # two layers 3840, plus the tied head 16x10 = 160 -> N = 4000 matmul weights.
    assert matmul_params(TINY) == 4000
    # Attention, forward: (q.k and p.v) 2 x 2 FLOPs x T=8 x H*hd=16 per layer, 2 layers -> 1024.
    assert attention_flops_per_token(TINY) == 1024
    assert train_flops_per_token(TINY) == 3 * (2 * 4000 + 1024) == 27072  # PaLM: 6N + 12 L H Q T
    assert train_flops_per_token(TINY, causal=True) == 3 * (2 * 4000 + 512)


def test_matmul_weights_are_the_models_matrices():
    # Every 2-D parameter is used in one matmul per token (the tied embedding as the head), nothing else.
    for cfg in (TINY, ModelConfig(preset="cpu-0.1m"), ModelConfig(preset="cpu-3m")):
        model = Decoder(cfg)
        assert matmul_params(cfg) == sum(p.numel() for p in model.parameters() if p.dim() == 2)


def test_matmul_part_matches_torchs_flop_counter():
    # torch counts every mm of forward and backward; on CPU it does not count the attention kernel,
    # which the formula adds by hand.
    model = Decoder(TINY)
    x = torch.randint(0, TINY.vocab_size, (3, TINY.block_size))
    with FlopCounterMode(display=False) as counter:
        lm_loss(model(x), x).backward()
    per_token = train_flops_per_token(TINY) - 3 * attention_flops_per_token(TINY)
    assert counter.get_total_flops() == per_token * x.numel()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_param_count_by_arithmetic_equals_the_models(preset):
    cfg = ModelConfig(preset=preset)
    with torch.device("meta"):
        assert flops.param_count(cfg) == count_params(Decoder(cfg))


def test_param_count_with_grouped_query_attention():
    cfg = ModelConfig(n_head=4, n_kv_head=2, d_model=64, vocab_size=300)
    with torch.device("meta"):
        assert flops.param_count(cfg) == count_params(Decoder(cfg))
