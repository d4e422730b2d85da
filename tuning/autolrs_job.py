"""One AutoLRS training run: its config and the Train job that runs it (the AutoLRS driver sets every LR).

Shared by the AutoLRS flow and the Ray Tune search that runs AutoLRS inside every trial.
"""

from __future__ import annotations

from pydantic import Field

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    Section,
    StoreConfig,
    TrainConfig,
    volatile,
)
from asymptote.job import TrainJob, make_job
from asymptote.store import Store
from asymptote.tuning.autolrs import AutoLRSOptions


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
    """Optimisation; the run's steps are train.max_steps (or epochs). train.lr and the schedule are
    not used: AutoLRS sets the LR of every step (train.warmup_steps is its default warmup)."""
    autolrs: AutoLRSOptions = Field(default_factory=AutoLRSOptions)
    """The search: range, trials per stage, trial and stage lengths, optimiser backend."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig, json_schema_extra={"volatile": True})
    """Execution (never part of a cache key)."""
    store: StoreConfig = Field(default_factory=StoreConfig, json_schema_extra={"volatile": True})
    """Artifact store (never part of a cache key)."""


def autolrs_job(config: AutoLRSFlowConfig, data_rel: str, hub: str | None = None) -> TrainJob:
    return make_job(
        name=config.name,
        model=config.model,
        data=config.data,
        train=config.train,
        data_artifact=data_rel,
        driver=config.autolrs.model_dump(),
        compute=config.compute,
        store=Store(config.store).cfg,
        progress_hub=hub,
    )
