"""Merges of fine-tuned checkpoints relative to their base, as mergekit offers for Hugging Face models.

Every merge works on task vectors tau_k = theta_k - theta_base, one parameter tensor at a time
(read lazily from each safetensors file, so memory holds the output plus one tensor per member):

    theta = theta_base + scale * delta(tau_1, ..., tau_K)

- task_arithmetic (Ilharco et al., 2023): delta = mean_k tau_k. scale = 1 is the uniform soup;
  scale > 1 extrapolates along the mean task vector (task arithmetic's lambda = scale / K).
- ties (Yadav et al., 2023): trim each tau_k to its top `density` fraction by magnitude, elect a
  sign per entry (the sign of the sum of trimmed values), then average only the values that
  agree with the elected sign (disjoint mean).
- dare (Yu et al., 2024): drop each entry of tau_k with probability `drop` and rescale the rest by
  1 / (1 - drop), then average; the masks are seeded by (seed, tensor, member).
- slerp: spherical interpolation at `t` between two task vectors (flattened per tensor); falls
  back to linear interpolation when they are (anti)parallel. Interpolating task vectors rather
  than raw weights matters: fine-tunes of one base are nearly parallel as raw weights, which
  would make slerp indistinguishable from lerp.
Non-floating tensors are copied from the base.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
from safetensors import safe_open

from asymptote.soups import Evaluate, Ingredient, Tensors
from asymptote.soups_config import MergeOptions

MergeFn = Callable[..., torch.Tensor]  # (deltas, index=tensor index, **options) -> merged delta


def task_arithmetic(deltas: list[torch.Tensor], index: int = 0) -> torch.Tensor:
    return torch.stack(deltas).mean(0)


def ties(deltas: list[torch.Tensor], index: int = 0, density: float = 0.2) -> torch.Tensor:
    if not 0 < density <= 1:
        raise ValueError(f"ties density={density}: must be in (0, 1] (the fraction of each task vector kept)")
    trimmed = torch.stack([_keep_top(d, density) for d in deltas])
    sign = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    count = agree.sum(0).clamp_min(1)
    return (trimmed * agree).sum(0) / count


def _keep_top(delta: torch.Tensor, density: float) -> torch.Tensor:
    k = max(1, math.ceil(density * delta.numel()))
    if k >= delta.numel():
        return delta
    threshold = delta.abs().flatten().kthvalue(delta.numel() - k + 1).values
    return delta * (delta.abs() >= threshold)


def dare(deltas: list[torch.Tensor], index: int = 0, drop: float = 0.5, seed: int = 0) -> torch.Tensor:
    if not 0 <= drop < 1:
        raise ValueError(f"dare drop={drop}: must be in [0, 1) (the probability of dropping an entry)")
    out = torch.zeros_like(deltas[0])
    for k, d in enumerate(deltas):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index * 1009 + k)
        keep = torch.rand(d.shape, generator=gen) >= drop
        out += d * keep / (1 - drop)
    return out / len(deltas)


def slerp(deltas: list[torch.Tensor], index: int = 0, t: float = 0.5) -> torch.Tensor:
    if len(deltas) != 2:
        raise ValueError(f"slerp merges exactly 2 checkpoints, got {len(deltas)}; pass two members")
    if not 0 <= t <= 1:
        raise ValueError(f"slerp t={t}: must be in [0, 1] (0 = first member, 1 = second)")
    a, b = deltas
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return torch.lerp(a, b, t)
    cos = torch.clamp((a.flatten() @ b.flatten()) / (na * nb), -1.0, 1.0)
    if abs(float(cos)) > 1 - 1e-6:
        return torch.lerp(a, b, t)
    theta = torch.arccos(cos)
    return (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)


# Explicit registry: merge name -> function over task vectors of one tensor.
MERGES: dict[str, MergeFn] = {
    "task_arithmetic": task_arithmetic,
    "ties": ties,
    "dare": dare,
    "slerp": slerp,
}


def merge(
    base: Ingredient, members: Sequence[Ingredient], method: str, scale: float = 1.0, **options
) -> Tensors:
    """theta_base + scale * delta over every tensor, reading one tensor per member at a time."""
    if method not in MERGES:
        raise ValueError(f"merge method={method!r}: unknown; allowed: {', '.join(MERGES)}")
    if not members:
        raise ValueError("a merge needs at least one member checkpoint")
    fn = MERGES[method]
    out: Tensors = {}
    with contextlib.ExitStack() as stack:
        readers = [_reader(stack, m) for m in members]
        for i, name in enumerate(base.keys()):
            b = base.tensor(name)
            if not b.is_floating_point():
                out[name] = b
                continue
            deltas = [read(name).float() - b.float() for read in readers]
            out[name] = (b.float() + scale * fn(deltas, index=i, **options)).to(b.dtype)
    return out


def _reader(stack: contextlib.ExitStack, member: Ingredient) -> Callable[[str], torch.Tensor]:
    """One tensor at a time: an open safetensors handle for files, else the ingredient's own reader."""
    path = getattr(member, "path", None)
    if path is None:
        return member.tensor
    handle = stack.enter_context(safe_open(str(path), framework="pt"))
    return handle.get_tensor


# ----------------------------------------------------------------------------- choosing on held-out


def best_scale_merge(
    base: Ingredient,
    members: Sequence[Ingredient],
    method: str,
    options: MergeOptions,
    model: nn.Module,
    evaluate: Evaluate,
) -> tuple[Tensors, float, dict[float, float]]:
    """The merge at the scale with the lowest held-out loss: (tensors, scale, held-out loss per scale)."""
    best, losses = None, {}
    for scale in options.scales:
        tensors = merge(base, members, method, scale, **options.for_method(method))
        model.load_state_dict(tensors)
        losses[scale] = evaluate(model)
        if best is None or losses[scale] < losses[best[1]]:
            best = (tensors, scale)
        del tensors
    return best[0], best[1], losses
