"""Ensemble distillation: the losses and batch sources a student trains with.

Two ways to pass an ensemble's knowledge to one small model:
- token level: match the teachers' averaged next-token distribution on real text (KL at a
  temperature, mixed with plain cross-entropy). Teacher logits are computed on the fly inside the
  training job from members loaded once per worker, and kept in memory (TeacherCache, up to a
  budget) for windows that come again; nothing is materialised in the store.
- sequence level (the paper's method): sample text from the teachers (asymptote.sampling), store it
  as token shards (asymptote.synthetic), and train with plain cross-entropy on a mix of synthetic and real windows.

`token_kl_objective` and `mixture_batches` are the entries the job registries name ("token_kl",
"mixture"). Pure torch/numpy: no Ray, no Prefect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from asymptote.config import ConfigError, Section, build
from asymptote.data import epoch_windows, windows_to_batch
from asymptote.ensemble import Ensemble
from asymptote.job import model_from_run
from asymptote.model import lm_loss
from asymptote.shards import load_dataset
from asymptote.store import Store


class TokenKLOptions(Section):
    """TrainJob.objective for token-level distillation."""

    kind: Literal["token_kl"] = "token_kl"
    teachers: list[str] = Field(min_length=1)
    """Store-relative paths of the teacher runs (runs/<key>); their logits are averaged."""
    temperature: float = Field(1.0, gt=0)
    """Softmax temperature of both teacher and student inside the KL term (scaled back by T^2)."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the KL term; 1 - alpha weighs cross-entropy on the real next token."""
    combine: Literal["logits", "probs"] = "logits"
    """How teachers are combined: average logits (the paper's ensemble) or probabilities."""


class MixtureOptions(Section):
    """TrainJob.batches for sequence-level distillation."""

    kind: Literal["mixture"] = "mixture"
    synthetic: str
    """Store-relative path of the synthetic data artifact (data/<key>) made by sampling."""
    weight: float = Field(0.75, ge=0, le=1)
    """Fraction of each batch's sequences taken from the synthetic data (the paper: 0.75 to 0.9)."""
    synthetic_tokens: int | None = Field(None, ge=1)
    """Use only the first this many synthetic training tokens (whole sequences); None: all of them.
    One sampling run at the largest amount serves every amount a search tries."""


def parse_options(cls: type[Section], spec: dict, where: str) -> Section:
    """Validate an option dict, naming the offending field as `where.field` in the error."""
    try:
        return build(cls, spec)
    except ConfigError as err:
        raise ConfigError(str(err).replace("\n  ", f"\n  {where}.")) from None


# ----------------------------------------------------------------------------- token level


def soft_kl(
    teacher_logprobs: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over positions of KL(teacher_T || student_T), both softened by the temperature.

    The teacher may put exactly zero mass on tokens (log-prob -inf, e.g. a one-hot teacher): those
    terms are 0 by the convention 0 log 0 = 0, which F.kl_div would turn into NaN.
    """
    log_p = F.log_softmax(teacher_logprobs.float() / temperature, dim=-1)
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p = log_p.exp()
    kl = torch.special.xlogy(p, p) - p * log_q
    return kl.sum(-1).mean()


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy on the real next token.

    T^2 keeps the KL gradients on the scale of the cross-entropy's whatever the temperature (Hinton et al.).
    """
    ce = lm_loss(student_logits, targets)
    if alpha == 0:
        return ce
    kl = soft_kl(teacher_logprobs, student_logits, temperature) * temperature**2
    return alpha * kl + (1 - alpha) * ce


def load_teacher(store: Store, teachers: list[str], student_cfg, device, how: str = "logits") -> Ensemble:
    """The teacher runs as one frozen ensemble on device (a single teacher is a 1-member ensemble)."""
    members = [model_from_run(store, rel, device) for rel in teachers]
    for rel, m in zip(teachers, members, strict=False):
        if m.cfg.vocab_size != student_cfg.vocab_size or m.cfg.block_size < student_cfg.block_size:
            raise ValueError(
                f"objective.teachers: {rel} has vocab_size={m.cfg.vocab_size}, block_size="
                f"{m.cfg.block_size}; the student needs vocab_size={student_cfg.vocab_size} and "
                f"block_size >= {student_cfg.block_size}"
            )
    teacher = Ensemble(members, how).eval()
    teacher.requires_grad_(False)
    return teacher


class TeacherCache:
    """The teachers' log-probabilities on windows seen before, kept up to a memory budget.

    Synthetic windows are aligned to sample starts, so every epoch repeats them, and real windows
    repeat whenever an epoch's grid shift recurs; a student trained for many epochs meets each
    window many times, and a repeat costs a lookup instead of K teacher forwards. Entries live in
    CPU memory, keyed by the window's tokens (a window's distribution depends on nothing else);
    once `max_bytes` is spent, new windows are computed and not kept.
    """

    def __init__(self, teacher: nn.Module, max_bytes: int):
        self.teacher, self.max_bytes = teacher, max_bytes
        self.entries: dict[bytes, torch.Tensor] = {}
        self.bytes = self.hits = self.misses = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_bytes <= 0:
            return self.teacher(x)
        keys = [row.tobytes() for row in x.cpu().numpy()]
        hit, miss = [], []
        for i, k in enumerate(keys):
            (hit if k in self.entries else miss).append(i)
        self.hits, self.misses = self.hits + len(hit), self.misses + len(miss)
        if not hit:
            out = self.teacher(x)
        else:
            cached = torch.stack([self.entries[keys[i]] for i in hit]).to(x.device)
            out = cached.new_empty((len(keys), *cached.shape[1:]))
            out[hit] = cached
            if miss:
                out[miss] = self.teacher(x[miss])
        for i in miss:
            size = out[i].numel() * out.element_size()
            if keys[i] not in self.entries and self.bytes + size <= self.max_bytes:
                self.entries[keys[i]] = out[i].to("cpu", copy=True)
                self.bytes += size
        return out


def token_kl_objective(job, store: Store, env):
    """Registered objective "token_kl": the teachers are loaded here, once per worker, behind a
    cache of their outputs on windows already seen (compute.teacher_cache_mb)."""
    opts = parse_options(TokenKLOptions, job.objective, "objective")
    teacher = load_teacher(store, opts.teachers, job.model, env.device, opts.combine)
    cache = TeacherCache(teacher, int(job.compute.teacher_cache_mb * 2**20))

    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return distill_loss(model(x), cache(x), y, opts.temperature, opts.alpha)

    return objective


# ----------------------------------------------------------------------------- sequence level


@dataclass
class WindowStream:
    """Window starts in a seeded order per epoch, consumed a few at a time across epoch boundaries.

    Real text uses the shifted, shuffled grid of data.epoch_windows. Synthetic text is a stack of
    independent samples of `seq_len` tokens, so its windows are aligned to sample starts: a window
    never straddles two unrelated samples.
    """

    n_tokens: int
    block: int
    seed: int
    seq_len: int | None = None  # set for synthetic (aligned) streams
    epoch: int = 0
    index: int = 0
    _order: np.ndarray | None = field(default=None, repr=False)

    def order(self) -> np.ndarray:
        if self._order is None:
            if self.seq_len is None:
                self._order = epoch_windows(self.n_tokens, self.block, self.seed, self.epoch)
            else:
                rng = np.random.default_rng([self.seed, self.epoch, 1])
                self._order = self.seq_len * rng.permutation(self.n_tokens // self.seq_len)
        return self._order

    def take(self, k: int) -> np.ndarray:
        if k > 0 and not len(self.order()):
            raise ValueError(
                f"{self.n_tokens} tokens hold no window of {self.seq_len or self.block + 1} tokens"
            )
        out = []
        while k > 0:
            part = self.order()[self.index : self.index + k]
            out.append(part)
            k -= len(part)
            self.index += len(part)
            if self.index == len(self.order()):
                self.epoch, self.index, self._order = self.epoch + 1, 0, None
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index, self._order = state["epoch"], state["index"], None


@dataclass
class MixtureBatcher:
    """Global batches of `batch_size` windows, a fraction `weight` of them synthetic.

    Batch i holds floor(w*B*(i+1)) - floor(w*B*i) synthetic rows, so the long-run fraction is exactly w
    with no randomness; which windows come is a function of data_seed only, and the position is a
    small dict, so a resumed run sees the very batches it would have seen.
    """

    real: np.ndarray
    synthetic: np.ndarray
    seq_len: int
    weight: float
    block: int
    batch_size: int
    data_seed: int
    rank: int = 0
    world: int = 1
    batch: int = 0

    def __post_init__(self):
        if self.batch_size % self.world:
            raise ValueError(
                f"train.batch_size={self.batch_size} must be divisible by num_workers={self.world}"
            )
        if self.seq_len < self.block + 1:
            raise ValueError(
                f"batches.synthetic holds sequences of {self.seq_len} tokens; a student with "
                f"block_size={self.block} needs at least {self.block + 1}: sample longer sequences"
            )
        self.real_stream = WindowStream(len(self.real), self.block, self.data_seed)
        self.synthetic_stream = WindowStream(len(self.synthetic), self.block, self.data_seed, self.seq_len)

    def synthetic_rows(self, i: int) -> int:
        wb = self.weight * self.batch_size
        return math.floor(wb * (i + 1) + 1e-9) - math.floor(wb * i + 1e-9)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.synthetic_rows(self.batch)
        parts = [
            (self.synthetic, self.synthetic_stream.take(k)),
            (self.real, self.real_stream.take(self.batch_size - k)),
        ]
        xs, ys = zip(
            *[windows_to_batch(tokens, starts, self.block) for tokens, starts in parts if len(starts)],
            strict=False,
        )
        self.batch += 1
        per_rank = self.batch_size // self.world
        rows = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        return torch.cat(xs)[rows], torch.cat(ys)[rows]

    def state_dict(self) -> dict:
        return {
            "batch": self.batch,
            "data_seed": self.data_seed,
            "weight": self.weight,
            "real": self.real_stream.state_dict(),
            "synthetic": self.synthetic_stream.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["data_seed"] != self.data_seed or state["weight"] != self.weight:
            raise ValueError("checkpoint was written with another data_seed or synthetic weight")
        self.batch = state["batch"]
        self.real_stream.load_state_dict(state["real"])
        self.synthetic_stream.load_state_dict(state["synthetic"])


def mixture_batches(job, store: Store, env, train_tokens: np.ndarray) -> MixtureBatcher:
    """Registered batch source "mixture": real windows mixed with a synthetic data artifact."""
    opts = parse_options(MixtureOptions, job.batches, "batches")
    if not store.has(opts.synthetic):
        raise ValueError(
            f"batches.synthetic={opts.synthetic!r}: no committed data artifact there; "
            "give the data/<key> path a sampling run returned"
        )
    synthetic, _, meta = load_dataset(store, opts.synthetic)
    seq_len = meta.get("sequence_length")
    if not seq_len:
        raise ValueError(
            f"batches.synthetic={opts.synthetic!r} is not a sampled data artifact (no sequence_length)"
        )
    synthetic = synthetic_prefix(synthetic, seq_len, opts.synthetic_tokens, opts.synthetic)
    return MixtureBatcher(
        train_tokens,
        synthetic,
        seq_len,
        opts.weight,
        job.model.block_size,
        job.train.batch_size,
        job.train.data_seed,
        rank=env.rank,
        world=env.world,
    )


def synthetic_prefix(tokens: np.ndarray, seq_len: int, cap: int | None, where: str = "") -> np.ndarray:
    """The first floor(cap / seq_len) whole sequences of a sampled artifact's training tokens."""
    if cap is None:
        return tokens
    if cap > len(tokens):
        raise ValueError(
            f"batches.synthetic_tokens={cap:,} exceeds the {len(tokens):,} synthetic training tokens of "
            f"{where!r}; sample more sequences or ask for fewer tokens"
        )
    return tokens[: (cap // seq_len) * seq_len]
