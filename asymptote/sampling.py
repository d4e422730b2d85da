"""Sampling text from a model or an ensemble: batched, KV-cached, seeded.

An ensemble samples from its combined prediction (by default the average of its members' logits,
the paper's choice), each member keeping its own KV cache. Work is cut into fixed chunks of
sequences, each with its own seed, so the tokens a chunk yields never depend on how many workers
share the chunks out. Pure torch/numpy: no Ray, no Prefect.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from asymptote.distill_config import SamplingConfig
from asymptote.ensemble import combine
from asymptote.model import Decoder, KVCache


def next_logprobs(
    models: Sequence[Decoder], idx: torch.Tensor, caches: Sequence[KVCache] | None, how: str = "logits"
) -> torch.Tensor:
    """Combined log-probabilities (B, vocab) of the token after idx; with caches, idx is only the new part."""
    caches = caches or [None] * len(models)
    return combine([m(idx, cache)[:, -1] for m, cache in zip(models, caches, strict=False)], how)


def draw(logprobs: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row (B, 1): sampled at temperature, or the argmax at temperature 0."""
    if temperature == 0:
        return logprobs.argmax(-1, keepdim=True)
    probs = F.softmax(logprobs / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    models: Decoder | Sequence[Decoder],
    prompt: torch.Tensor,
    length: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    how: str = "logits",
    use_cache: bool = True,
) -> torch.Tensor:
    """Extend prompt (B, P) to (B, length) tokens. Without the cache every step re-reads the whole prefix
    (the reference the cached path is tested against)."""
    models = [models] if isinstance(models, torch.nn.Module) else list(models)
    _check_length(models, prompt.shape[1], length)
    caches = [_empty_cache(m, prompt.shape[0]) for m in models] if use_cache else None
    out, fresh = prompt, prompt
    while out.shape[1] < length:
        token = draw(next_logprobs(models, fresh if use_cache else out, caches, how), temperature, generator)
        out = torch.cat([out, token], dim=1)
        fresh = token
    return out


def _empty_cache(model: Decoder, batch: int) -> KVCache:
    p = next(model.parameters())
    return KVCache.empty(model.cfg, batch, p.device, p.dtype)


def _check_length(models: Sequence[Decoder], prompt_len: int, length: int) -> None:
    # The last token is predicted from block_size positions, so a sequence holds at most block_size + 1.
    longest = min(m.cfg.block_size for m in models) + 1
    if not prompt_len <= length <= longest:
        raise ValueError(
            f"sequence length {length} must lie between the prompt ({prompt_len} tokens) and the "
            f"teachers' block_size + 1 = {longest}; lower the length or use teachers with a longer context"
        )
    if len({m.cfg.vocab_size for m in models}) > 1:
        raise ValueError("ensemble members disagree on vocab_size; they cannot be averaged")


# ----------------------------------------------------------------------------- chunks of a sampling run


def chunk_prompts(train_tokens: np.ndarray, cfg: SamplingConfig, chunk: int) -> np.ndarray:
    """(n, prompt_tokens) slices of real training text at positions seeded by (seed, chunk)."""
    rng = np.random.default_rng([cfg.seed, chunk])
    starts = rng.integers(0, len(train_tokens) - cfg.prompt_tokens, cfg.chunk_size(chunk))
    return np.stack([train_tokens[s : s + cfg.prompt_tokens] for s in starts]).astype(np.int64)


def chunk_generator(cfg: SamplingConfig, chunk: int, device: torch.device | str) -> torch.Generator:
    seed = int(np.random.default_rng([cfg.seed, chunk, 1]).integers(2**62))
    return torch.Generator(device=device).manual_seed(seed)


def sample_chunk(
    models: Sequence[Decoder],
    train_tokens: np.ndarray,
    cfg: SamplingConfig,
    chunk: int,
    length: int,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Chunk `chunk` of a sampling run: (n, length) token ids in the corpus' dtype."""
    prompt = torch.from_numpy(chunk_prompts(train_tokens, cfg, chunk)).to(device)
    out = generate(models, prompt, length, cfg.temperature, chunk_generator(cfg, chunk, device), cfg.combine)
    return out.cpu().numpy().astype(train_tokens.dtype)
