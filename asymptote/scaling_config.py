"""The scaling study's config: sizes, budget, the recipe search, ensembles, data efficiency, fits;
and what the study measures and returns (`StudyData`, `Analysis`, `ScalingStudyResult`).

Pure (pydantic, no torch): `asymptote scaling` validates it, and names a wrong field, before the
training stack is imported.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    Section,
    StoreConfig,
    TrainConfig,
    volatile,
)
from asymptote.refs import DataRef
from asymptote.search_space import RECIPES, Point, SearchGrid, on_grid, size_label


def token_budget(budget: int | None, data: DataConfig) -> int:
    """The token budget D of a study: `budget`, or data.max_train_tokens; refused when neither is set or
    they disagree."""
    d = data.max_train_tokens
    if budget is None and d is None:
        raise ValueError("no token budget: set budget (or data.max_train_tokens)")
    if budget is not None and d is not None and d != budget:
        raise ValueError(f"budget={budget} and data.max_train_tokens={d} disagree; set one of them")
    return budget or d


class FitConfig(Section):
    """How fits are bootstrapped and how the study's checks are judged."""

    n_boot: int = Field(1000, ge=10)
    """Bootstrap resamples per fit."""
    level: float = Field(0.95, gt=0, lt=1)
    """Confidence level of the reported intervals."""
    seed: int = 0
    """Seed of the bootstrap's random numbers."""
    noise_floor: float = Field(0.002, gt=0)
    """Smallest per-point loss noise (nats) the bootstrap assumes, e.g. when members agree closely."""
    overfit_tol: float = Field(0.005, ge=0)
    """An epoch curve overfits when its longest run is worse than its best by more than this (nats)."""
    combine: str = "logits"
    """Which ensemble loss the K fits use: logits (the paper's choice) or probs."""
    supported_p: float = Field(0.95, gt=0.5, le=1)
    """A claim is supported only when this fraction of bootstrap draws goes the paper's way."""
    wd_factor: float = Field(3.0, gt=1)
    """"Well above" the standard weight decay means at least this many times it."""


class StartPoint(Section):
    """Where coordinate descent starts (each value must be on the grid)."""

    lr: float = 1e-2
    """Starting peak learning rate."""
    weight_decay: float = 0.8
    """Starting weight decay of the regularized recipe (the standard recipe uses its fixed value)."""
    epochs: float = 2
    """Starting epoch count."""


class SearchConfig(Section):
    """How each (size, recipe, budget) is searched."""

    grid: SearchGrid = Field(
        default_factory=lambda: SearchGrid(lr=[3e-3, 1e-2], weight_decay=[0.1, 0.8], epochs=[1, 2])
    )
    """Grid of learning rates, weight decays and epochs (default: a tiny CPU grid; recipe
    scaling-paper uses the paper's full grid, which is also SearchGrid's own default)."""
    start: StartPoint = Field(default_factory=StartPoint)
    """Start of the first size's descent."""
    standard_weight_decay: float = Field(0.1, ge=0)
    """The standard recipe's fixed weight decay."""
    warm_start: bool = True
    """Start each larger size at the previous size's optimum (fewer runs than starting over)."""
    max_runs: int | None = Field(None, ge=1)
    """Cap on distinct points per descent (None: run until certified); a capped search is reported
    as not certified."""
    engine: Literal["flow", "tune"] = "flow"
    """flow: the descent runs as cached Prefect training tasks; tune: each search runs as a Ray Tune
    experiment (sampler below) and is then certified by the flow."""
    sampler: Literal["certified", "optuna", "bayesopt"] = "certified"
    """Tune engine only: certified coordinate descent, Optuna TPE, or BayesOpt over grid indices."""
    trials: int = Field(12, ge=1)
    """Tune engine with optuna / bayesopt: trials before certification."""
    seed: int = 0
    """Seed of the optuna / bayesopt sampler."""


class EnsembleConfig(Section):
    """Ensembles of the regularized optimum."""

    members: int = Field(2, ge=1)
    """K: members per size (first-k ensembles are evaluated for every k <= K)."""
    epoch_factor: float = Field(2.0, gt=0)
    """Members train this many times the single model's optimal epochs."""
    weight_decay_factor: float = Field(0.5, ge=0)
    """Members use this fraction of the single model's optimal weight decay."""


class EfficiencyConfig(Section):
    """The standard recipe at more token budgets, for its data scaling law L(D)."""

    budgets: list[int] = Field(default_factory=lambda: [5_000, 10_000, 40_000])
    """Token budgets besides the study's own. L(D) has 3 parameters, so 3 budgets in all fit it exactly
    and nothing checks it; from 4 its fit can be identified (and the ladder's data multipliers shown)."""
    sizes: list[int] | None = Field(default_factory=lambda: [0])
    """Indices into the study's sizes (0 = smallest, -1 = largest) searched at every budget; L(D) is the
    standard recipe's best loss over them. None: every size (the paper's baseline: the best over
    parameter counts); the default, the smallest size alone, keeps the main job small."""

    @field_validator("budgets")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v) or len(set(v)) != len(v):
            raise ValueError(f"budgets={v} must be distinct positive token counts")
        return sorted(v)


def _tiny_sizes() -> list[ModelConfig]:
    return [
        ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=86),
        ModelConfig(n_layer=2, n_head=2, d_model=48, d_ff=128),
        ModelConfig(preset="cpu-0.1m"),
    ]


def _tiny_train() -> TrainConfig:
    return TrainConfig(
        batch_size=16, warmup_steps=5, eval_every=1_000_000, log_every=1_000_000, checkpoint_every=1_000_000
    )


class ScalingStudyConfig(Section):
    """A data-constrained scaling study. Defaults are the main job's tiny CPU scale; recipes
    scaling-tiny (bench) and scaling-paper (GPU cluster) are larger."""

    name: str = volatile("scaling")
    """Label shown in reports and progress."""
    sizes: list[ModelConfig] = Field(default_factory=_tiny_sizes)
    """Model shapes, smallest first (presets or explicit shapes)."""
    budget: int | None = Field(20_000, ge=1)
    """Token budget D of the study (each run's data.max_train_tokens); None: data.max_train_tokens."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus and tokenisation (its max_train_tokens, if set, must agree with budget)."""
    train: TrainConfig = Field(default_factory=_tiny_train)
    """Optimisation template: everything except lr, weight decay, epochs and seeds, which the study sets."""
    search: SearchConfig = Field(default_factory=SearchConfig)
    """The recipe search."""
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    """The ensembles."""
    efficiency: EfficiencyConfig = Field(default_factory=EfficiencyConfig)
    """The data-efficiency fit."""
    seeds: int = Field(2, ge=1)
    """Replicas of every certified optimum (train_seed = data_seed = 1..seeds), evaluated on the test
    split: the seed-to-seed spread is the noise every interval is drawn from (>= 2 to measure it)."""
    sweep_size: int = -1
    """Index into sizes of the epoch sweep (loss vs epochs, WD fixed vs tuned); -1: the largest."""
    fits: FitConfig = Field(default_factory=FitConfig)
    """Bootstrap and checks."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution (never part of a cache key)."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store (never part of a cache key)."""

    @model_validator(mode="after")
    def _check(self) -> "ScalingStudyConfig":
        if not self.sizes:
            raise ValueError("sizes is empty; give at least one model shape")
        labels = [size_label(m) for m in self.sizes]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"sizes have repeated labels {labels}; every shape must differ in preset or depth/width"
            )
        for field, idx in (
            ("efficiency.sizes", self.efficiency.sizes or []),
            ("sweep_size", [self.sweep_size]),
        ):
            bad = [i for i in idx if not -len(labels) <= i < len(labels)]
            if bad:
                raise ValueError(
                    f"{field}={bad}: no such size index; sizes has {len(labels)} entries "
                    f"({', '.join(labels)}), so use 0..{len(labels) - 1} or negative indices"
                )
        if self.tokens in self.efficiency.budgets:
            raise ValueError(
                f"efficiency.budgets={self.efficiency.budgets} repeats the study budget {self.tokens}"
            )
        _start_on_grid(self.search)
        return self

    @property
    def tokens(self) -> int:
        return token_budget(self.budget, self.data)

    @property
    def labels(self) -> list[str]:
        return [size_label(m) for m in self.sizes]

    @property
    def efficiency_labels(self) -> list[str]:
        idx = range(len(self.sizes)) if self.efficiency.sizes is None else self.efficiency.sizes
        return [self.labels[i] for i in idx]

    @property
    def sweep_label(self) -> str:
        return self.labels[self.sweep_size]


def _start_on_grid(search: SearchConfig) -> None:
    s = search.start
    on_grid(Point(s.lr, s.weight_decay, s.epochs), search.grid, RECIPES["regularized"])


# ----------------------------------------------------------------------------- results


class SizeData(BaseModel):
    """What one model size measured (test split unless named val)."""

    label: str
    params: int
    standard: list[float]
    """Test loss of the standard recipe's certified optimum, one per seed."""
    regularized: list[float]
    """Test loss of the regularized recipe's certified optimum, one per seed."""
    regularized_wd: float = 0.0
    """Weight decay the regularized search chose (on validation)."""
    standard_val: float = math.nan
    regularized_val: float = math.nan
    """Validation loss at which each search certified its optimum (what selection read)."""
    members: list[float] = Field(default_factory=list)
    """Each ensemble member's test loss."""
    ensemble: dict[str, list[float]] = Field(default_factory=dict)
    """Test loss of the first-k ensemble, k = 1..K, per combination (logits, probs)."""
    subsets: dict[str, float] = Field(default_factory=dict)
    """Test loss of the logit ensemble of every non-empty subset of members ("0,2" -> loss)."""
    multisets: dict[str, list[float]] = Field(default_factory=dict)
    """Test loss per block of test windows of the logit ensemble of every multiset of members
    ("0,0,2": member 0 counted twice): what the member bootstrap redraws."""
    windows: list[int] = Field(default_factory=list)
    """Test windows in each block of `multisets`."""

    def subset_curve(self) -> list[float]:
        """Loss at k members as the mean over all k-subsets (k = 1..K); [] without subsets."""
        by_k: dict[int, list[float]] = {}
        for key, loss in self.subsets.items():
            by_k.setdefault(len(key.split(",")), []).append(loss)
        return [float(np.mean(by_k[k])) for k in sorted(by_k)]


class StudyData(BaseModel):
    sizes: list[SizeData]
    base_budget: int
    split: str = "test"
    """The split every loss here was measured on: "test" only when it is the test split."""
    standard_wd: float = 0.1
    wd_grid: list[float] = Field(default_factory=list)
    """The weight decays the regularized search could choose ([]: not recorded): a choice at either
    end says only that the optimum may lie beyond it."""
    sweep: dict[str, dict[float, float]] = Field(default_factory=dict)
    """Test loss against epochs at one size, per recipe (standard = WD fixed, regularized = tuned WD)."""
    efficiency: dict[int, list[float]] = Field(default_factory=dict)
    """Per token budget: test losses (per seed) of the standard recipe's optimum chosen on validation."""


class FitOutcome(BaseModel):
    """A fit's parameters and intervals, or why it could not be made; `identified` says if it may judge."""

    ok: bool
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""

    @property
    def identified(self) -> bool:
        return self.ok and bool(self.params.get("identified", True))

    @property
    def asymptote(self) -> float | None:
        return self.params.get("E") if self.ok else None

    def ci(self, name: str = "E") -> list[float] | None:
        return self.params["ci"][name] if self.ok else None


class Claim(BaseModel):
    """One of the paper's claims judged on this study: estimate, interval, and p_direction: the share of
    bootstrap draws that go the paper's way (1.0 is the strongest support, not a p-value)."""

    estimate: float | None
    ci: list[float | None]
    p_direction: float | None = Field(validation_alias=AliasChoices("p_direction", "p"))
    """Share of bootstrap draws on the paper's side (results stored before the rename named it p)."""
    supported: bool
    identified: bool
    direction: str
    """What the paper says, as an inequality on the estimate."""
    note: str = ""


class Analysis(BaseModel):
    fits: dict[str, FitOutcome]
    """standard_N, regularized_N, ensemble_K/<label>, joint_N, standard_D."""
    multipliers: dict[str, dict[str, Any]]
    """regularized / joint: how many times the base budget the standard recipe needs to reach it."""
    claims: dict[str, Claim] = Field(default_factory=dict)
    checks: dict[str, bool | None]
    """wd_overfit_fixed, ensemble_monotone_in_k, joint_below_regularized: true only when supported."""
    seed_noise: float | None
    """Pooled seed-to-seed standard deviation of test losses (nats)."""
    ensemble_ci: dict[str, list[list[float]]] = Field(default_factory=dict)
    """Per size, the bootstrap interval of the loss at each k (what the members plot draws)."""
    split: str = "test"


class SearchRow(BaseModel):
    """One certified search: its size, recipe and budget, its optimum and what it ran."""

    size: str
    recipe: str
    budget: int
    best: dict[str, float]
    loss: float
    """Validation loss at the optimum (what selection read)."""
    certified: bool
    points: int
    run: str
    """The optimum's run (runs/<key>)."""


class ScalingStudyResult(BaseModel):
    """What `scaling_study` returns: the measured losses, the fits, the checks, where things are."""

    flow_run_id: str | None
    data: DataRef
    searches: list[SearchRow]
    study: StudyData
    analysis: Analysis
    runs: list[str]
    """Every run (runs/<key>) the study used."""
    report_uri: str
    members: dict[str, list[str]] = Field(default_factory=dict)
    """Per size label, its ensemble members (runs/<key>, member k at index k - 1): what later stages
    (distillation, soups) are handed."""
    figures: dict[str, Any] = Field(default_factory=dict)
