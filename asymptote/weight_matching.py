"""Weight matching (Ainsworth et al., 2023) for our Decoder: permute one model's units to line up with another's.

A Decoder computes the same function under three kinds of permutation:
- residual stream (one permutation of d_model, shared by every layer): columns of tok_emb (tied, so
  the output head too), every RMSNorm gain, the input columns of wq/wk/wv/w1/w3 and the output
  rows of wo/w2. RMSNorm is a mean over the stream, so it commutes with the permutation.
- attention heads, per layer: whole heads move, consistently in wq rows, wk/wv rows and wo columns.
  RoPE rotates pairs of dimensions inside a head, so dimensions inside a head never move. With
  grouped-query attention, key/value heads move with their group of query heads, and query heads
  may also move within their group (they share that group's keys and values).
- SwiGLU hidden units, per layer: rows of w1 and w3, columns of w2.

`match` maximises sum_W <W_ref, permuted W_other> by coordinate descent: each step fixes all other
permutations and solves one group exactly as a linear assignment (scipy linear_sum_assignment),
cycling residual -> every layer's heads and hidden units until nothing changes.
A permutation maps slots of the reference to indices of the other: new[slot] = old[perm[slot]].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment

from asymptote.config import ModelConfig
from asymptote.soups import Ingredient, Tensors, weighted_average

_LAYER = re.compile(r"layers\.(\d+)\.(attn|mlp)\.(wq|wk|wv|wo|w1|w2|w3)\.weight$")


@dataclass
class Permutation:
    residual: torch.Tensor
    """(d_model,) permutation of the residual stream."""
    kv: list[torch.Tensor]
    """Per layer, (n_kv_head,) permutation of key/value heads (with their query groups)."""
    q: list[torch.Tensor]
    """Per layer, (n_head,) permutation of query heads; q[s] // group == kv[s // group]."""
    ff: list[torch.Tensor]
    """Per layer, (d_ff,) permutation of SwiGLU hidden units."""

    @classmethod
    def identity(cls, cfg: ModelConfig) -> "Permutation":
        ar = torch.arange
        return cls(
            ar(cfg.d_model),
            [ar(cfg.n_kv_head) for _ in range(cfg.n_layer)],
            [ar(cfg.n_head) for _ in range(cfg.n_layer)],
            [ar(cfg.d_ff) for _ in range(cfg.n_layer)],
        )

    @classmethod
    def random(cls, cfg: ModelConfig, gen: torch.Generator) -> "Permutation":
        """A random permutation that respects the GQA grouping (for tests and checks)."""
        g = cfg.n_head // cfg.n_kv_head
        kv = [torch.randperm(cfg.n_kv_head, generator=gen) for _ in range(cfg.n_layer)]
        within = [torch.stack([torch.randperm(g, generator=gen) for _ in range(cfg.n_kv_head)]) for _ in kv]
        q = [(s[:, None] * g + r).flatten() for s, r in zip(kv, within, strict=False)]
        return cls(
            torch.randperm(cfg.d_model, generator=gen),
            kv,
            q,
            [torch.randperm(cfg.d_ff, generator=gen) for _ in range(cfg.n_layer)],
        )

    def same_as(self, other: "Permutation") -> bool:
        pairs = [
            (self.residual, other.residual),
            *zip(self.kv, other.kv, strict=False),
            *zip(self.q, other.q, strict=False),
            *zip(self.ff, other.ff, strict=False),
        ]
        return all(torch.equal(a, b) for a, b in pairs)


def _heads(perm: torch.Tensor, size: int) -> torch.Tensor:
    """Row indices that move whole blocks of `size` rows (a head's dimensions) by perm."""
    return (perm[:, None] * size + torch.arange(size)).flatten()


def permute(state: Tensors, perm: Permutation, cfg: ModelConfig) -> Tensors:
    """The state dict with every permutation applied (a new dict; the input is not modified)."""
    return {name: _permute_tensor(name, t, perm, cfg) for name, t in state.items()}


def _permute_tensor(name: str, t: torch.Tensor, perm: Permutation, cfg: ModelConfig) -> torch.Tensor:
    r, hd = perm.residual, cfg.head_dim
    if name == "tok_emb.weight":
        return t[:, r]
    if name.endswith("norm.weight"):
        return t[r]
    m = _LAYER.search(name)
    if m is None:
        raise ValueError(f"weight matching does not know the tensor {name!r}; teach _permute_tensor its axes")
    layer, which = int(m.group(1)), m.group(3)
    q, kv, ff = _heads(perm.q[layer], hd), _heads(perm.kv[layer], hd), perm.ff[layer]
    rows = {"wq": q, "wk": kv, "wv": kv, "w1": ff, "w3": ff}
    if which in rows:
        return t[rows[which]][:, r]
    return t[r][:, q if which == "wo" else ff]  # wo, w2: output rows on the stream, inputs permuted


# ----------------------------------------------------------------------------- matching


def _assign(cost: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Column assigned to each row maximising the total, and that total."""
    c = cost.double().numpy()
    rows, cols = linear_sum_assignment(c, maximize=True)
    return torch.as_tensor(cols, dtype=torch.long), float(c[rows, cols].sum())


def _residual_axis(name: str) -> int:
    """Which axis of a tensor runs along the residual stream."""
    if name == "tok_emb.weight" or re.search(r"\.(wq|wk|wv|w1|w3)\.weight$", name):
        return 1
    return 0  # norm gains, wo, w2


def _residual_step(ref: Tensors, other: Tensors, perm: Permutation, cfg: ModelConfig) -> torch.Tensor:
    inner = Permutation(torch.arange(cfg.d_model), perm.kv, perm.q, perm.ff)
    moved = permute(other, inner, cfg)  # every permutation but the residual one
    cost = torch.zeros(cfg.d_model, cfg.d_model, dtype=torch.float64)
    for name, a in ref.items():
        axis = _residual_axis(name)
        fa = a.double().movedim(axis, 0).reshape(cfg.d_model, -1)
        fb = moved[name].double().movedim(axis, 0).reshape(cfg.d_model, -1)
        cost += fa @ fb.T
    return _assign(cost)[0]


def _head_features(state: Tensors, layer: int, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_kv, group, f) query-side features (wq rows + wo columns) and (n_kv, f') key/value features."""
    g, p = cfg.n_head // cfg.n_kv_head, f"layers.{layer}.attn."
    q = state[p + "wq.weight"].double().reshape(cfg.n_kv_head, g, -1)
    o = state[p + "wo.weight"].double().T.reshape(cfg.n_kv_head, g, -1)
    k = state[p + "wk.weight"].double().reshape(cfg.n_kv_head, -1)
    v = state[p + "wv.weight"].double().reshape(cfg.n_kv_head, -1)
    return torch.cat([q, o], -1), torch.cat([k, v], -1)


def _head_step(
    ref: Tensors, moved: Tensors, layer: int, cfg: ModelConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kv perm, q perm) of one layer: for each pair of kv groups the best query pairing inside them,
    then the best pairing of groups under those scores."""
    g = cfg.n_head // cfg.n_kv_head
    qa, kva = _head_features(ref, layer, cfg)
    qb, kvb = _head_features(moved, layer, cfg)
    qsim = torch.einsum("igf,jhf->ijgh", qa, qb)
    cost = kva @ kvb.T
    inner = {}
    for i in range(cfg.n_kv_head):
        for j in range(cfg.n_kv_head):
            inner[i, j], value = _assign(qsim[i, j])
            cost[i, j] += value
    kv = _assign(cost)[0]
    q = torch.cat([kv[i] * g + inner[i, int(kv[i])] for i in range(cfg.n_kv_head)])
    return kv, q


def _ff_step(ref: Tensors, moved: Tensors, layer: int) -> torch.Tensor:
    p = f"layers.{layer}.mlp."

    def feats(s):
        return torch.cat([s[p + "w1.weight"], s[p + "w3.weight"], s[p + "w2.weight"].T], 1).double()

    return _assign(feats(ref) @ feats(moved).T)[0]


def match(ref: Tensors, other: Tensors, cfg: ModelConfig, max_iter: int = 30) -> Permutation:
    """The permutation of `other` that best lines it up with `ref` (coordinate descent over groups)."""
    if set(ref) != set(other):
        raise ValueError("weight matching needs two state dicts of the same Decoder shape")
    perm = Permutation.identity(cfg)
    for _ in range(max_iter):
        before = Permutation(perm.residual, list(perm.kv), list(perm.q), list(perm.ff))
        perm.residual = _residual_step(ref, other, perm, cfg)
        moved = _residual_only(other, perm.residual, cfg)  # the layer steps see the stream lined up
        for layer in range(cfg.n_layer):
            perm.kv[layer], perm.q[layer] = _head_step(ref, moved, layer, cfg)
            perm.ff[layer] = _ff_step(ref, moved, layer)
        if perm.same_as(before):
            break
    return perm


def _residual_only(state: Tensors, residual: torch.Tensor, cfg: ModelConfig) -> Tensors:
    ident = Permutation.identity(cfg)
    ident.residual = residual
    return permute(state, ident, cfg)


def align(ref: Tensors, other: Tensors, cfg: ModelConfig, max_iter: int = 30) -> Tensors:
    """`other` permuted to line up with `ref` (same function as `other`)."""
    return permute(other, match(ref, other, cfg, max_iter), cfg)


@dataclass
class AlignedMember:
    """An ingredient that loads already aligned to a reference state dict."""

    member: Ingredient | None
    """None: the reference itself."""
    ref: Tensors
    cfg: ModelConfig
    max_iter: int = 30

    @property
    def name(self) -> str:
        return self.member.name if self.member is not None else "reference"

    def load(self) -> Tensors:
        if self.member is None:  # the reference itself: already aligned
            return self.ref
        return align(self.ref, self.member.load(), self.cfg, self.max_iter)


def aligned_average(members: Sequence[Ingredient], cfg: ModelConfig, max_iter: int = 30) -> Tensors:
    """Uniform average after aligning every member to the first; streamed over members.

    Memory: the reference, the running mean, and one member with its aligned copy.
    """
    ref = members[0].load()
    aligned = [AlignedMember(None, ref, cfg)] + [AlignedMember(m, ref, cfg, max_iter) for m in members[1:]]
    return weighted_average(aligned, lambda k, n: 1.0)


def objective(ref: Tensors, other: Tensors) -> float:
    """sum_W <W_ref, W_other>: what matching maximises (for reports and tests)."""
    return float(sum(float((ref[n].double() * other[n].double()).sum()) for n in ref))
