"""The soups study's config (base, fine-tune sweep, soups, merges, independent members) and its results.

Pure configuration (pydantic and numpy, no torch): `asymptote soups` validates it, and names a wrong
field, before the training stack is imported. The merge names and each merge's typed options come
from the merge registry (asymptote.merges.MERGES, which imports without torch). The soup names are
the soup registry's keys (asymptote.soups.SOUPS, which needs torch; a test keeps them equal).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    Section,
    StoreConfig,
    TrainConfig,
    known_names,
    volatile,
)
from asymptote.merges import MERGES
from asymptote.refs import DataRef, RunRef

SOUP_METHODS = ("uniform", "greedy", "learned", "mwa")
MERGE_METHODS = tuple(MERGES)


def heldout_test_split(
    val_tokens: np.ndarray, heldout_fraction: float = 0.5, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, the rest): chunk i of `chunk` tokens is held-out when floor((i+1) f) > floor(i f).

    So a fraction f of the chunks, spread evenly, is held-out; with f = 0.5 they alternate. The rest is
    reported on only when the corpus has no test split.
    """
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction={heldout_fraction}: must be strictly between 0 and 1")
    idx = np.arange(-(-len(val_tokens) // chunk))
    held = np.floor((idx + 1) * heldout_fraction) > np.floor(idx * heldout_fraction)
    pieces = [val_tokens[i * chunk : (i + 1) * chunk] for i in idx]
    if held.all() or not held.any():
        raise ValueError(
            f"{len(val_tokens)} validation tokens make {len(idx)} chunk(s) of {chunk}: too few for "
            "both held-out and the rest; lower soups.split_chunk_windows or raise data.val_fraction"
        )
    return (
        np.concatenate([p for p, h in zip(pieces, held, strict=False) if h]),
        np.concatenate([p for p, h in zip(pieces, held, strict=False) if not h]),
    )


class SoupOptions(Section):
    """Which soups to make and how; every choice is made on the held-out split."""

    methods: list[str] = Field(default_factory=lambda: ["uniform", "greedy", "learned", "mwa"])
    """Soups to make: names from the soup registry (uniform, greedy, learned, mwa)."""
    heldout_fraction: float = Field(0.5, gt=0, lt=1)
    """Share of the target's validation split used as held-out (every choice). Figures are reported on
    the test split; the rest of validation only stands in for it when the corpus has none."""
    split_chunk_windows: int = Field(16, ge=1)
    """Held-out and the rest of validation interleave in chunks of this many evaluation windows."""
    eval_windows: int | None = Field(None, ge=1)
    """Cap on held-out windows when scoring candidates (evenly spaced); None: the whole held-out split.
    Reported losses always use every window of the reported split."""
    mwa_penalty: float = Field(8.0, ge=0)
    """p in w_k = (L_k / L_min) ** (-p): 0 is the uniform soup, larger favours the best ingredients."""
    learned_steps: int = Field(40, ge=1)
    """Adam steps of the learned soup's mixing logits."""
    learned_lr: float = Field(0.05, gt=0)
    """Adam learning rate of the mixing logits."""
    learned_batch_size: int = Field(16, ge=1)
    """Held-out windows per learned-soup step."""
    seed: int = 0
    """Order of the held-out windows the learned soup trains on."""
    bootstrap: int = Field(2000, ge=100)
    """Bootstrap draws behind every gain's interval and p_direction (asymptote.stats)."""
    curve_points: int = Field(11, ge=3)
    """Evenly spaced points (alpha 0..1, odd so the midpoint is one) along each interpolation segment."""

    @field_validator("curve_points")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"{v}: give an odd count so alpha = 1/2 is one of the points")
        return v

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return known_names(v, SOUP_METHODS, "soups")

    def split(self, val_tokens: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(held-out, the rest) of a validation split, by this config's rule."""
        return heldout_test_split(val_tokens, self.heldout_fraction, self.split_chunk_windows * block)

    def split_meta(self) -> dict[str, Any]:
        """The split rule as recorded in soup manifests and cache keys."""
        return {"heldout_fraction": self.heldout_fraction, "chunk_windows": self.split_chunk_windows}


class MergeOptions(Section):
    """Which merges to make; each one's scale is chosen on the held-out split."""

    methods: list[str] = Field(default_factory=lambda: list(MERGES))
    """Merges to make: names from the merge registry (asymptote.merges.MERGES)."""
    scales: list[float] = Field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    """Candidate scales of the merged task vector; the best on held-out is kept."""
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Options by merge, typed beside each merge's function in asymptote.merges (e.g. ties: {density:
    0.3}; dare: {drop: 0.5, seed: 0}; slerp: {t: 0.5}); a merge not named keeps its defaults."""

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return known_names(v, MERGES, "merges")

    @field_validator("scales")
    @classmethod
    def _some(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one scale (1.0 is the plain merge)")
        return v

    @field_validator("options")
    @classmethod
    def _typed(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        known_names(list(v), MERGES, "merges")
        return {name: MERGES[name].validate(options) for name, options in v.items()}

    def for_method(self, method: str) -> dict[str, Any]:
        """The options of one merge, as keyword arguments of its function (defaults filled in)."""
        return MERGES[method].validate(self.options.get(method, {}))


def _recipe(**fields: Any) -> TrainConfig:
    # The distill step's teacher recipe: in the main job its first member doubles as this base.
    base = {
        "lr": 3e-3,
        "max_steps": 200,
        "batch_size": 16,
        "warmup_steps": 20,
        "eval_every": 100,
        "eval_windows": 64,
        "log_every": 20,
        "checkpoint_every": 100,
        "weight_decay": 0.5,
    }
    return TrainConfig(**(base | fields))


class BaseConfig(Section):
    """The pretrained checkpoint every fine-tune starts from."""

    run: str | None = None
    """A run or checkpoint already in the store (runs/<key> or its URI); None: train one here."""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="cpu-0.1m"))
    """Shape of the base trained here (and of the independent members)."""
    data: DataConfig | None = None
    """Corpus the base is pretrained on (e.g. another part of the text); None: the target corpus."""
    train: TrainConfig = Field(default_factory=_recipe)
    """Pre-training recipe of the base trained here."""


class BasinConfig(Section):
    """Find the sweep's learning rates by measurement, so that its fine-tunes share one basin.

    A ladder of learning rates descends from the base's own peak: lr_i = base lr / factor**i. At each
    rung two probe fine-tunes (two seeds, the sweep's longest length) train from the base and the
    held-out loss is measured along the straight line between them. The first rung whose midpoint
    (their two-ingredient uniform soup) beats both ends is accepted (else the last rung probed); the
    sweep then draws learning rates log-uniformly in [lr / lr_span, lr], and the probe pair joins it.
    """

    rungs: int = Field(0, ge=0)
    """Rungs to probe at most; 0 turns the probe off (sweep.lr is then absolute)."""
    factor: float = Field(2.0, gt=1)
    """Each rung's learning rate is the previous one's divided by this."""
    lr_span: float = Field(4.0, ge=1)
    """The sweep's learning rates reach down to the accepted rung's divided by this."""


class SweepConfig(Section):
    """The fine-tunes: hyperparameters drawn from a Ray Tune search space."""

    n_models: int = Field(4, ge=1)
    """Fine-tunes M."""
    lr: list[float] = Field(default_factory=lambda: [3e-4, 3e-3])
    """Log-uniform range [low, high] of the peak learning rate (ignored when basin.rungs > 0)."""
    weight_decay: list[float] = Field(default_factory=lambda: [0.01, 0.5])
    """Log-uniform range [low, high] of the weight decay."""
    epochs: list[float] = Field(default_factory=lambda: [0.03, 0.06])
    """Choices of passes over the target's training split (ignored when steps_fraction is given)."""
    steps_fraction: list[float] = Field(default_factory=list)
    """Choices of fine-tune length as fractions of the base's own optimiser steps (its schedule);
    empty: use epochs."""
    basin: BasinConfig = Field(default_factory=BasinConfig)
    """The learning-rate range found by a basin probe, relative to the base's peak."""
    seed: int = 0
    """Seed of the draws (each run also draws its own train/data seed)."""
    engine: Literal["tune", "tasks"] = "tasks"
    """tune: one Ray Tune trial per fine-tune; tasks: concurrent cached Prefect train tasks (no Tune
    start-up). Both train the same content-addressed runs."""
    train: TrainConfig = Field(
        default_factory=lambda: _recipe(warmup_steps=5, eval_every=1000, max_steps=None)
    )
    """Everything else of a fine-tune (batch size, warmup, schedule, ...); lr, weight decay, length and
    seeds are drawn."""

    @field_validator("lr", "weight_decay")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not 0 < v[0] <= v[1]:
            raise ValueError(f"{v}: give a log-uniform range as two numbers (low, high) with 0 < low <= high")
        return v

    @field_validator("epochs")
    @classmethod
    def _choices(cls, v: list[float]) -> list[float]:
        if not v or min(v) <= 0:
            raise ValueError(f"{v}: give one or more positive epoch counts")
        return v

    @field_validator("steps_fraction")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if v and min(v) <= 0:
            raise ValueError(f"{v}: fractions of the base's steps must be positive")
        return v

    @model_validator(mode="after")
    def _probe_needs_two(self) -> "SweepConfig":
        if self.basin.rungs and self.n_models < 2:
            raise ValueError("a basin probe trains a pair that joins the sweep: n_models must be >= 2")
        return self

    def lengths(self, base_steps: int | None) -> tuple[str, list[float]]:
        """("max_steps", steps) from steps_fraction of the base's steps, else ("epochs", epochs)."""
        if not self.steps_fraction:
            return "epochs", self.epochs
        if not base_steps:
            raise ValueError("sweep.steps_fraction needs a base run whose summary records its steps")
        return "max_steps", [max(1, round(f * base_steps)) for f in self.steps_fraction]


class IndependentConfig(Section):
    """Members trained from scratch on the target with different seeds: naive vs aligned averaging."""

    members: int = Field(2, ge=0)
    """How many (0 skips this part; otherwise at least 2). Ignored when `runs` are given."""
    train: TrainConfig = Field(default_factory=_recipe)
    """Recipe of every member; member i adds i to train_seed and data_seed."""
    runs: list[str] = Field(default_factory=list)
    """Members already in the store (runs/<key> paths or URIs, at least 2) to average instead of
    training them here: e.g. the scaling study's ensemble, handed over by the recipe flow."""

    @field_validator("members")
    @classmethod
    def _zero_or_two(cls, v: int) -> int:
        if v == 1:
            raise ValueError("1: averaging needs at least 2 members (or 0 to skip)")
        return v

    @field_validator("runs")
    @classmethod
    def _two_runs(cls, v: list[str]) -> list[str]:
        if len(v) == 1:
            raise ValueError(f"{v}: averaging needs at least 2 members (or none: train them here)")
        return v


class SoupStudyConfig(Section):
    """Model soups study. The defaults are the main job's tiny step (about a minute on 2 cores)."""

    name: str = volatile("soups")
    """Label shown in reports and progress."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Target corpus: fine-tunes train on its train split; held-out comes from its validation split;
    figures are reported on its test split."""
    base: BaseConfig = Field(default_factory=BaseConfig)
    """The checkpoint every fine-tune starts from."""
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    """Fine-tunes of the base."""
    ingredients: list[str] = Field(default_factory=list)
    """Checkpoints of the store to soup instead of running the sweep (runs/<key> paths or URIs)."""
    soups: SoupOptions = Field(default_factory=lambda: SoupOptions(eval_windows=128, learned_steps=20))
    """Which soups, and the held-out / test split."""
    merges: MergeOptions = Field(default_factory=MergeOptions)
    """Which merges, relative to the base."""
    independent: IndependentConfig = Field(default_factory=IndependentConfig)
    """Naive vs aligned averaging of members trained from scratch."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution (never part of a cache key)."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store (never part of a cache key)."""

    @model_validator(mode="after")
    def _merges_need_a_base(self) -> "SoupStudyConfig":
        if self.ingredients and self.merges.methods and not self.base.run:
            raise ValueError(
                "merges are relative to the base the ingredients were fine-tuned from: "
                "set base.run, or merges.methods=[] to soup them without merges"
            )
        return self


# ----------------------------------------------------------------------------- results


Kind = Literal["ingredient", "soup", "merge", "member", "independent-average", "ensemble"]


class SoupEntry(BaseModel):
    """One model of the study (an ingredient, a soup, a merge, an average, the ensemble) and its losses."""

    name: str
    kind: Kind
    heldout: float
    """Held-out loss (part of the validation split; every choice is made on it)."""
    test: float
    """Loss on the reported split (the study's `split` names it: the test split where there is one)."""
    rel: str | None = None
    """Store-relative path of its checkpoint (None for the ensemble, which is not one model)."""
    weights: dict[str, float] = {}
    """Ingredient -> mean mixing weight, for soups and averages."""
    info: dict[str, Any] = {}
    ood_test: float | None = None
    """Loss on the pretraining corpus's test split (off the fine-tuning distribution; reported only)."""
    gain: dict[str, Any] | None = None
    """Soups and merges: gain over the best ingredient (chosen on held-out) on the reported split:
    estimate, ci, p_direction, resampled, verdict (asymptote.soups_gains)."""
    ood_gain: dict[str, Any] | None = None
    """The same gain on the pretraining corpus's test split."""
    test_windows: list[float] | None = None
    """Per-window losses on the reported split (ingredients, soups, merges): what pools bases' gains."""
    ood_windows: list[float] | None = None
    """Per-window losses on the pretraining corpus's test split."""


class Segment(BaseModel):
    """Losses along the straight line (1 - alpha) start + alpha end between two models."""

    name: str
    start: str
    end: str
    points: list[dict[str, float]]
    """Per alpha: heldout, and (for the report's plot) test and ood where scored."""
    check: dict[str, Any] = {}
    """basin_check of the held-out losses: barrier, midpoint_gain, soups."""


class Kitchen(BaseModel):
    """Everything one cooking run needs. The soups tasks key a cooking run by all of it, with the
    ingredients' and base's digests and the code that cooks."""

    ingredients: list[str]
    base: str | None
    data: str
    """Store-relative path of the target's data artifact."""
    soups: SoupOptions
    merges: MergeOptions
    ood_data: str | None = None
    """Store-relative path of the pretraining corpus's data artifact: its test split is the
    out-of-distribution side (None: not scored)."""


class Cooking(BaseModel):
    """What one cooking run returns: every model's losses and the interpolation segments."""

    entries: list[SoupEntry]
    segments: list[Segment] = []
    split: str = "test"
    """The real name of the split `test` losses are on ("test", or the validation rest without one)."""
    ood_split: str | None = None
    """The real name of the pretraining corpus's split behind `ood_test` (None: not scored)."""


class FineTune(BaseModel):
    run: RunRef
    hparams: dict[str, Any]
    """Drawn lr, weight_decay, epochs (or max_steps), seed."""


class Rung(BaseModel):
    """One rung of the basin probe: two fine-tunes at one learning rate and the line between them."""

    lr: float
    lr_fraction: float
    """lr as a fraction of the base's peak learning rate."""
    runs: list[str]
    segment: Segment


class SoupStudyResult(BaseModel):
    """What the soup flow returns: references into the store and every loss."""

    flow_run_id: str | None
    data: DataRef
    base: str | None
    """Store-relative path of the base checkpoint."""
    finetunes: list[FineTune]
    entries: list[SoupEntry]
    """Every ingredient, soup, merge, member, average and the ensemble, with held-out and test losses."""
    report_uri: str
    segments: list[Segment] = []
    """Loss along the line between the two best ingredients, and between the base and the soup."""
    probe: list[Rung] = []
    """The basin probe's rungs, in the order probed; the last is the one accepted."""
    split: str = "test"
    """The real name of the split every `test` figure is on: "test" where the target has a test split."""
    ood_split: str | None = None
    """The real name of the pretraining corpus's split behind every `ood_test` figure."""

    def entry(self, name: str) -> SoupEntry | None:
        """The entry of that name (a soup, merge, average or the ensemble), or None."""
        return next((e for e in self.entries if e.name == name), None)

    def best_single(self) -> SoupEntry | None:
        """The fine-tune with the lowest held-out loss (never chosen on test)."""
        singles = [e for e in self.entries if e.kind == "ingredient"]
        return min(singles, key=lambda e: e.heldout) if singles else None

    def test_loss(self) -> dict[str, float]:
        """Headline test losses: the best single (chosen on held-out), each soup and merge, the averages."""
        out = {}
        singles = [e for e in self.entries if e.kind == "ingredient"]
        if singles:
            out["best_single"] = self.best_single().test
            out["oracle_single"] = min(e.test for e in singles)
        out |= {
            e.name: e.test
            for e in self.entries
            if e.kind in ("soup", "merge", "independent-average", "ensemble")
        }
        members = [e.test for e in self.entries if e.kind == "member"]
        if members:
            out["independent_members"] = sum(members) / len(members)
        return out

    def ood_test_loss(self) -> dict[str, float]:
        """Losses on the pretraining corpus's test split: the best single and every soup and merge."""
        best = self.best_single()
        out = {"best_single": best.ood_test} if best and best.ood_test is not None else {}
        return out | {
            e.name: e.ood_test for e in self.entries if e.kind in ("soup", "merge") and e.ood_test is not None
        }

    def gains(self, ood: bool = False) -> dict[str, dict[str, Any]]:
        """Per soup and merge: gain over the best single (estimate, ci, p_direction, resampled, verdict),
        on the reported split or out of distribution."""
        return {
            e.name: (e.ood_gain if ood else e.gain)
            for e in self.entries
            if e.kind in ("soup", "merge") and (e.ood_gain if ood else e.gain)
        }

    def tracked_models(self) -> list[dict[str, Any]]:
        """The models no training run stands for (soups, merges, averages, the ensemble), with their test
        figures, for experiment tracking; ingredients and members are runs, tracked as such."""
        return [
            {
                "name": e.name,
                "role": e.kind,
                "rel": e.rel,
                "metrics": {
                    "test_loss": e.test,
                    "heldout_loss": e.heldout,
                    "ood_test_loss": e.ood_test,
                    "test_gain": e.gain["estimate"] if e.gain else None,
                },
            }
            for e in self.entries
            if e.kind not in ("ingredient", "member")
        ]
