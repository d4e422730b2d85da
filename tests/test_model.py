"""The decoder: shapes, causality, presets, tied embeddings, KV cache."""

from __future__ import annotations

import pytest
import torch

from asymptote.config import ModelConfig
from asymptote.model import Decoder, KVCache, count_params
from asymptote.presets import CPU_LADDER, PRESETS

TINY = ModelConfig(n_layer=2, n_head=2, d_model=16, d_ff=24, block_size=16)


def test_logits_shape():
    model = Decoder(TINY)
    x = torch.randint(0, 256, (3, 10))
    assert model(x).shape == (3, 10, 256)


def test_causal_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = Decoder(TINY).eval()
    x = torch.randint(0, 256, (1, 12))
    y = x.clone()
    y[0, 7:] = torch.randint(0, 256, (5,))
    assert torch.allclose(model(x)[0, :7], model(y)[0, :7], atol=1e-6)
    assert not torch.allclose(model(x)[0, 7:], model(y)[0, 7:])


def test_embeddings_are_tied():
    model = Decoder(TINY)
    x = torch.randint(0, 256, (1, 4))
    with torch.no_grad():
        model.tok_emb.weight.mul_(2)
    names = [n for n, _ in model.named_parameters()]
    assert not any("lm_head" in n for n in names)
    assert model(x).shape[-1] == model.tok_emb.weight.shape[0]


def test_grouped_query_attention_runs():
    cfg = ModelConfig(n_layer=1, n_head=4, n_kv_head=2, d_model=32, d_ff=48, block_size=8)
    model = Decoder(cfg)
    assert model.layers[0].attn.wk.weight.shape == (2 * cfg.head_dim, 32)
    assert model(torch.randint(0, 256, (2, 8))).shape == (2, 8, 256)


def test_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    model = Decoder(TINY).eval()
    x = torch.randint(0, 256, (2, 9))
    full = model(x)
    cache = KVCache.empty(TINY, 2, "cpu", torch.float32)
    steps = [model(x[:, :5], cache)[:, -1]] + [model(x[:, t : t + 1], cache)[:, -1] for t in range(5, 9)]
    assert torch.allclose(torch.stack(steps[1:], 1), full[:, 5:], atol=1e-5)
    assert torch.allclose(steps[0], full[:, 4], atol=1e-5)


def test_too_long_sequence_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        Decoder(TINY)(torch.zeros(1, 17, dtype=torch.long))


def _params(name: str) -> int:
    with torch.device("meta"):
        return count_params(Decoder(ModelConfig(preset=name)))


def test_cpu_ladder_spans_point1m_to_10m_and_increases():
    sizes = [_params(n) for n in CPU_LADDER]
    assert sizes == sorted(sizes)
    assert 0.08e6 < sizes[0] < 0.15e6 and 8e6 < sizes[-1] < 12e6


def test_baby_matches_nanogpt_budget():
    cfg = ModelConfig(preset="baby")
    assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.block_size) == (4, 4, 128, 64)
    assert _params("baby") <= 0.85e6


def test_paper_shapes():
    assert PRESETS["paper-600m"]["n_kv_head"] == 8
    cfg = ModelConfig(preset="paper-1.4b")
    assert (cfg.n_layer, cfg.d_model, cfg.d_ff, cfg.n_head, cfg.n_kv_head) == (16, 2048, 7168, 16, 8)
