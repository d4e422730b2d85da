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

Adding a merge is its function over task vectors, its options model beside it, and one line in
`MERGES`: the config (asymptote.soups_config) takes the merge names and validates each merge's
options from this registry. It imports this module without torch, so torch loads in the three
functions that call it (free after the first call).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from pydantic import Field
from safetensors import safe_open

from asymptote.config import Section

if TYPE_CHECKING:
    import torch

MergeFn = Callable[..., "torch.Tensor"]  # (deltas, index=tensor index, **options) -> merged delta


class Readable(Protocol):
    """A checkpoint read one tensor at a time (asymptote.soups.Checkpoint is one)."""

    def keys(self) -> list[str]: ...
    def tensor(self, key: str) -> torch.Tensor: ...


class NoOptions(Section):
    """This merge has no options."""


def task_arithmetic(deltas: list[torch.Tensor], index: int = 0) -> torch.Tensor:
    import torch  # here, not at the top: the config imports this registry without torch

    return torch.stack(deltas).mean(0)


class TiesOptions(Section):
    """TIES: trim each task vector, elect a sign per entry, average the agreeing values."""

    density: float = Field(0.3, gt=0, le=1)
    """Fraction of each task vector kept (largest magnitudes)."""


def ties(deltas: list[torch.Tensor], index: int = 0, density: float = 0.3) -> torch.Tensor:
    import torch  # here, not at the top: the config imports this registry without torch

    if not 0 < density <= 1:
        raise ValueError(f"ties density={density}: must be in (0, 1] (the fraction of each task vector kept)")
    trimmed = torch.stack([_keep_top(d, density) for d in deltas])
    sign = trimmed.sum(0).sign()
    agree = (trimmed.sign() == sign) & (trimmed != 0)
    count = agree.sum(0).clamp_min(1)
    return (trimmed * agree).sum(0) / count


def _keep_top(delta: torch.Tensor, density: float) -> torch.Tensor:
    k = max(1, math.ceil(density * delta.numel()))
    if k >= delta.numel():
        return delta
    threshold = delta.abs().flatten().kthvalue(delta.numel() - k + 1).values
    return delta * (delta.abs() >= threshold)


class DareOptions(Section):
    """DARE: drop task-vector entries at random, rescale the rest, average."""

    drop: float = Field(0.5, ge=0, lt=1)
    """Probability of dropping each task-vector entry."""
    seed: int = 0
    """Seed of the drop masks."""


def dare(deltas: list[torch.Tensor], index: int = 0, drop: float = 0.5, seed: int = 0) -> torch.Tensor:
    import torch  # here, not at the top: the config imports this registry without torch

    if not 0 <= drop < 1:
        raise ValueError(f"dare drop={drop}: must be in [0, 1) (the probability of dropping an entry)")
    out = torch.zeros_like(deltas[0])
    for k, d in enumerate(deltas):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index * 1009 + k)
        keep = torch.rand(d.shape, generator=gen) >= drop
        out += d * keep / (1 - drop)
    return out / len(deltas)


class SlerpOptions(Section):
    """SLERP: spherical interpolation between the two best ingredients' task vectors."""

    t: float = Field(0.5, ge=0, le=1)
    """Position between the two best ingredients (by held-out loss): 0 the best, 1 the second."""


def slerp(deltas: list[torch.Tensor], index: int = 0, t: float = 0.5) -> torch.Tensor:
    if len(deltas) != 2:
        raise ValueError(f"slerp merges exactly 2 checkpoints, got {len(deltas)}; pass two members")
    if not 0 <= t <= 1:
        raise ValueError(f"slerp t={t}: must be in [0, 1] (0 = first member, 1 = second)")
    a, b = deltas
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return a.lerp(b, t)
    cos = ((a.flatten() @ b.flatten()) / (na * nb)).clamp(-1.0, 1.0)
    if abs(float(cos)) > 1 - 1e-6:
        return a.lerp(b, t)
    theta = cos.arccos()
    return (((1 - t) * theta).sin() * a + (t * theta).sin() * b) / theta.sin()


@dataclass(frozen=True)
class Merge:
    """A registered merge: its function over the task vectors of one tensor, and its options."""

    fn: MergeFn
    options: type[Section] = NoOptions

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options as the function's keyword arguments, defaults filled in (unknown ones refused)."""
        return self.options.model_validate(options).model_dump()


# Explicit registry: merge name -> its function and options. The one list of merges.
MERGES: dict[str, Merge] = {
    "task_arithmetic": Merge(task_arithmetic),
    "ties": Merge(ties, TiesOptions),
    "dare": Merge(dare, DareOptions),
    "slerp": Merge(slerp, SlerpOptions),
}


def merge(
    base: Readable, members: Sequence[Readable], method: str, scale: float = 1.0, **options
) -> dict[str, torch.Tensor]:
    """theta_base + scale * delta over every tensor, reading one tensor per member at a time."""
    if method not in MERGES:
        raise ValueError(f"merge method={method!r}: unknown; allowed: {', '.join(MERGES)}")
    if not members:
        raise ValueError("a merge needs at least one member checkpoint")
    fn = MERGES[method].fn
    out = {}
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


def _reader(stack: contextlib.ExitStack, member: Readable) -> Callable[[str], torch.Tensor]:
    """One tensor at a time: an open safetensors handle for files, else the ingredient's own reader."""
    path = getattr(member, "path", None)
    if path is None:
        return member.tensor
    handle = stack.enter_context(safe_open(str(path), framework="pt"))
    return handle.get_tensor
