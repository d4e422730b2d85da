"""Sampling: seeded, batched, KV-cached generation from one model or an ensemble's averaged logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asymptote.config import ModelConfig
from asymptote.distill_config import SamplingConfig
from asymptote.model import Decoder, KVCache
from asymptote.sampling import chunk_prompts, generate, next_logprobs, sample_chunk

TINY = ModelConfig(n_layer=2, n_head=2, d_model=16, d_ff=32, block_size=24)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and a shared machine makes more threads erratic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int, cfg: ModelConfig = TINY) -> Decoder:
    torch.manual_seed(seed)
    model = Decoder(cfg).eval()
    with torch.no_grad():  # spread the init so distributions are far from uniform and samples differ
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10)
    return model


def _prompt(batch: int = 3, length: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(7))


def _gen(models, seed: int, **kw) -> torch.Tensor:
    return generate(models, _prompt(), 25, generator=torch.Generator().manual_seed(seed), **kw)


def test_sampling_is_reproducible_under_a_seed():
    model = _model(0)
    a, b, c = _gen(model, 1), _gen(model, 1), _gen(model, 2)
    assert a.shape == (3, 25) and torch.equal(a[:, :4], _prompt())
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("members", [1, 3])
def test_kv_cache_generation_equals_uncached(members):
    models = [_model(s) for s in range(members)]
    cached, uncached = _gen(models, 3), _gen(models, 3, use_cache=False)
    assert torch.equal(cached, uncached)
    greedy = [_gen(models, 0, temperature=0, use_cache=flag) for flag in (True, False)]
    assert torch.equal(*greedy)


def test_cached_step_logprobs_match_full_forward():
    model, seq = _model(0), _gen(_model(0), 5)
    cache = KVCache.empty(TINY, seq.shape[0], "cpu", torch.float32)
    steps = [next_logprobs([model], seq[:, :4], [cache])]
    steps += [next_logprobs([model], seq[:, t : t + 1], [cache]) for t in range(4, 24)]
    full = F.log_softmax(model(seq[:, :24]), dim=-1)[:, 3:]
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-5)


def test_ensemble_samples_from_averaged_logits():
    a, b = _model(0), _model(1)
    x = _prompt()
    expected = F.log_softmax((a(x)[:, -1] + b(x)[:, -1]) / 2, dim=-1)
    assert torch.allclose(next_logprobs([a, b], x, None), expected, atol=1e-6)
    assert torch.equal(_gen([a, a], 4), _gen(a, 4))  # two copies of one model are that model
    assert not torch.equal(_gen([a, b], 4), _gen(a, 4))


def test_greedy_is_the_argmax_continuation():
    model = _model(0)
    out = _gen(model, 0, temperature=0)
    logits = model(out[:, :-1])
    assert torch.equal(out[:, 4:], logits[:, 3:].argmax(-1))


def test_length_beyond_the_context_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        generate(_model(0), _prompt(), TINY.block_size + 2)


def test_chunks_do_not_depend_on_each_other():
    """A chunk's tokens are a function of (seed, chunk) only: workers may take chunks in any order."""
    cfg = SamplingConfig(n_sequences=10, batch_size=4, seed=3)
    tokens = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)
    models = [_model(0)]
    last = sample_chunk(models, tokens, cfg, 2, 25)
    first = sample_chunk(models, tokens, cfg, 0, 25)
    assert cfg.n_chunks() == 3 and last.shape == (2, 25) and first.shape == (4, 25) and last.dtype == np.uint8
    assert np.array_equal(first, sample_chunk(models, tokens, cfg, 0, 25))
    prompts = chunk_prompts(tokens, cfg, 0)
    assert np.array_equal(first[:, :1], prompts)
    assert any(np.array_equal(prompts[0], tokens[s : s + 1]) for s in range(len(tokens)))
