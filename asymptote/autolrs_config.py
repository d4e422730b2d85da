"""AutoLRS configs: the controller's options, one AutoLRS run, and a weight-decay search over such runs;
the results the two flows return and where a run keeps its trace and schedule.

Pure configuration (pydantic, no torch): `asymptote autolrs` validates it, and names a wrong field,
before the training stack is imported.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    Section,
    StoreConfig,
    TrainConfig,
    build,
    key_dict,
    volatile,
)
from asymptote.refs import DataRef, RunRef

MIN_POINTS = 5  # a quadratic smoothing spline needs k + 1 = 3 points; an exponential with a floor, more


class AutoLRSOptions(Section):
    """AutoLRS settings; in a TrainJob they live in `driver = {"kind": "autolrs", ...these fields}`."""

    kind: Literal["autolrs"] = "autolrs"
    """Driver name (always `autolrs`)."""
    range_rule: Literal["user", "step_law"] = "user"
    """Where the searched learning rates lie when min_lr/max_lr are unset: `user`, within range_factor
    of the learning rate the user configured (train.lr); `step_law`, [lr/10, 10 lr] around the Step
    Law optimum for the model's non-embedding parameters and the run's tokens (an extrapolated prior)."""
    range_factor: float = Field(30.0, gt=1)
    """With range_rule `user`: the search range is [train.lr / range_factor, train.lr * range_factor]
    (the upper end capped at 10)."""
    min_lr: float | None = Field(None, gt=0, le=10)
    """Lower end of the searched learning rates; set with max_lr, it overrides range_rule."""
    max_lr: float | None = Field(None, gt=0, le=10)
    """Upper end of the searched learning rates; set with min_lr, it overrides range_rule."""
    trials: int = Field(10, ge=2, le=100)
    """k: learning rates tried per stage (the reference's 10)."""
    trial_steps: int = Field(10, ge=MIN_POINTS)
    """tau': steps of each trial in the first stage (reference: 100; here 1/10 of it, for CPU runs)."""
    stage_steps: int = Field(100, ge=1)
    """tau: steps trained at the chosen LR in the first stage, and the forecast horizon (reference: 1000)."""
    max_stage_steps: int = Field(800, ge=1)
    """tau_max: tau' and tau double after each stage while tau' < tau_max/10; the stage after the first
    at that cap scores on validation loss (reference: 8000)."""
    backend: Literal["bayes_opt", "optuna_gp", "optuna_tpe"] = "bayes_opt"
    """Proposer of trial LRs: `bayes_opt` (GP, Matern 2.5, LCB with large kappa, as the paper), or
    Optuna's GP sampler (log expected improvement) or TPE sampler."""
    kappa: float = Field(1e5, gt=0)
    """LCB exploration weight for `bayes_opt`; very large means nearly pure exploration, as the paper."""
    val_points: int = Field(16, ge=MIN_POINTS)
    """Validation evaluations per trial once trials are scored on validation loss (paper: 16)."""
    val_windows: int | None = Field(None, ge=1)
    """Validation windows per trial evaluation (None: train.eval_windows)."""
    warmup_steps: int | None = Field(None, ge=0)
    """Linear warmup before the first stage (None: train.warmup_steps)."""
    warmup_lr: float | None = Field(None, gt=0, le=10)
    """LR the warmup climbs to (None: the user's train.lr, as a cosine's warmup climbs to its peak)."""
    decay_fraction: float = Field(0.2, ge=0, lt=1)
    """The last decay_fraction of the run's steps search no more: from the last chosen LR they anneal
    by a cosine to decay_floor times it at the last step (0: no decay, the search runs to the end)."""
    decay_floor: float = Field(0.1, gt=0, le=1)
    """Where the final decay ends, as a fraction of the last chosen LR (the baseline cosine's floor)."""
    seed: int = 0
    """Seed of the proposers (each proposal is a function of seed, stage and trial only)."""
    spike_guard: Literal["stage", "reference"] = "stage"
    """Which trials are scored by their recent level instead of their forecast: `stage` (any trial
    whose loss rose above its stage's start beyond noise) or `reference` (the reference code's:
    validation-scored trials whose loss reached the loss at the end of warmup). With `reference`, a
    high LR's spike and recovery is forecast as fast progress and wins (docs/autolrs.md)."""
    denoiser: Literal["robust", "reference"] = "robust"
    """How a trial's loss curve is cleaned before the exponential fit: `robust` (smoothing scaled to
    the curve's own noise) or `reference` (the reference code's; docs/autolrs.md)."""

    @model_validator(mode="after")
    def _check(self) -> "AutoLRSOptions":
        if (self.min_lr is None) != (self.max_lr is None):
            raise ValueError(
                f"min_lr={self.min_lr} and max_lr={self.max_lr}: give both or neither "
                "(neither: the range comes from range_rule)"
            )
        if self.min_lr is not None and self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr={self.min_lr} must be below max_lr={self.max_lr}")
        if self.trial_steps >= self.stage_steps:
            raise ValueError(
                f"trial_steps={self.trial_steps} must be below stage_steps={self.stage_steps} "
                "(trials are short looks ahead of a longer stage)"
            )
        if self.max_stage_steps < self.stage_steps:
            raise ValueError(
                f"max_stage_steps={self.max_stage_steps} must be at least stage_steps={self.stage_steps}"
            )
        return self


def _tiny_train() -> TrainConfig:
    return TrainConfig(
        max_steps=300,
        batch_size=16,
        warmup_steps=20,
        eval_every=100,
        eval_windows=64,
        log_every=25,
        checkpoint_every=100,
    )


class AutoLRSFlowConfig(Section):
    """One AutoLRS run. The defaults are the main job's tiny scale (a minute on 2 CPU cores)."""

    name: str = volatile("autolrs")
    """Label shown in reports and progress."""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="cpu-0.1m"))
    """Model shape."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus and tokenisation."""
    train: TrainConfig = Field(default_factory=_tiny_train)
    """Optimisation; the run's steps are train.max_steps (or epochs). The schedule is not used:
    AutoLRS sets the LR of every step. train.lr is the user's guess: the search range lies around it
    (autolrs.range_rule) and the warmup (train.warmup_steps by default) climbs to it."""
    autolrs: AutoLRSOptions = Field(default_factory=AutoLRSOptions)
    """The search: range, trials per stage, trial and stage lengths, optimiser backend."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution (never part of a cache key)."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store (never part of a cache key)."""


class AutoLRSSearchConfig(Section):
    """A weight-decay search whose every trial trains with AutoLRS (the flow config is the base run)."""

    name: str = volatile("autolrs-search")
    """Label of the search."""
    base: dict[str, Any] = Field(default_factory=dict)
    """The base run: an AutoLRSFlowConfig (model, data, train, autolrs, compute, store) as a mapping."""
    weight_decay: tuple[float, float] = (1e-3, 1.0)
    """Searched weight-decay range (log-uniform)."""
    samples: int = Field(4, ge=1, le=1000)
    """Tune trials."""
    sampler: Literal["optuna", "random"] = "optuna"
    """Optuna's TPE through Ray Tune's OptunaSearch, or plain random sampling."""
    seed: int = 0
    """Seed of the sampler."""

    @model_validator(mode="after")
    def _check(self) -> "AutoLRSSearchConfig":
        lo, hi = self.weight_decay
        if not 0 < lo < hi:
            raise ValueError(f"weight_decay={self.weight_decay}: need 0 < low < high for a log-uniform range")
        self.flow_config()  # the base must be a valid AutoLRS run before any trial starts
        return self

    def flow_config(self, weight_decay: float | None = None) -> "AutoLRSFlowConfig":
        cfg = build(AutoLRSFlowConfig, self.base)
        if weight_decay is not None:
            cfg = cfg.model_copy(
                update={"train": cfg.train.model_copy(update={"weight_decay": weight_decay})}
            )
        return cfg

    def key_parts(self) -> dict[str, Any]:
        """What a search's cache key hashes, besides the code version of the module that runs it
        (the search adds that: `asymptote.tuning.autolrs_tune.search_key`)."""
        return key_dict(self) | {"base": key_dict(self.flow_config())}


TRACE = "trace.json"
"""The AutoLRS driver's trace (state, metrics, options), under `trace_rel(run.rel)`."""
SCHEDULE = "schedule.json"
"""The found schedule in schedules/<run key> (key "lrs": one LR per step)."""
PLOT = "schedule.png"
"""Its plot, beside it."""


def trace_rel(run_rel: str) -> str:
    return f"{run_rel}/autolrs"


class ScheduleRef(BaseModel):
    """A found schedule in the store: replay it with train.schedule=replay, train.schedule_file=`uri`."""

    rel: str
    uri: str
    """URI of schedule.json (what train.schedule_file takes)."""
    plot_uri: str
    steps: int
    trial_steps: int
    chosen_lrs: list[float]
    final_val_loss: float | None


class AutoLRSResult(BaseModel):
    """What the autolrs flow returns: the run, the schedule artifact and the headline figures."""

    flow_run_id: str | None
    data: DataRef
    run: RunRef
    schedule: ScheduleRef
    val_loss: float
    metrics: dict[str, float] = Field(default_factory=dict)
    """The final weights' full validation and test figures (nats/token, bits per token and per byte)."""
    report_uri: str


class AutoLRSSearchResult(BaseModel):
    """What the autolrs-search flow returns: every trial and the best one."""

    flow_run_id: str | None = None
    """The Prefect flow run that returned it (when called through the autolrs_search flow)."""
    rel: str
    """searches/autolrs-<key>: where results.json is committed."""
    results: list[dict[str, Any]]
    """One row per trial: weight_decay, loss (final validation), run (runs/<key>)."""
    best: dict[str, Any]
