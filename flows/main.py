"""The main job: one corpus, one store, a recipe of method steps, one report at the end.

`asymptote run` (and `make demo`) calls this with the `main` recipe. Each step is a registered flow
that runs as a subflow and hands back a section of the final report with its figures and plots;
every training run inside is cached, so running the job again reuses everything it already made.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, model_validator

from asymptote.config import (
    ComputeConfig,
    ConfigError,
    DataConfig,
    Section,
    StoreConfig,
    build,
    key_dict,
    stable_hash,
)
from asymptote.infra.cluster import compute_session
from asymptote.store import Store
from asymptote.tasks.reports import publish_report


@dataclass
class StepOutcome:
    """A step's contribution to the main report."""

    markdown: str
    figures: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)  # PNGs referenced by the markdown
    result: BaseModel | None = None


# Explicit registry: step name -> (its config class, its step function(config) -> StepOutcome).
# Both are "module:attr" strings so a method's code loads only when its step runs.
STEPS: dict[str, tuple[str, str]] = {
    "pretrain": ("asymptote.config:PretrainConfig", "asymptote.flows.pretrain:main_step"),
    "scaling": ("asymptote.flows.scaling:ScalingStudyConfig", "asymptote.flows.scaling:main_step"),
    "distill": ("asymptote.flows.distill:DistillConfig", "asymptote.flows.distill:main_step"),
    "soups": ("asymptote.flows.soups:SoupStudyConfig", "asymptote.flows.soups:main_step"),
    "autolrs": ("asymptote.flows.autolrs:AutoLRSFlowConfig", "asymptote.flows.autolrs:main_step"),
}
SHARED = ("data", "store", "compute")


def _load(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


class MainConfig(Section):
    """The main job's recipe. Shared sections (data, store, compute) flow into every step
    unless the step's own section sets them."""

    steps: list[str] = Field(default_factory=lambda: ["pretrain"])
    """Steps to run, in order; names from the step registry."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus shared by every step."""
    store: StoreConfig = Field(default_factory=StoreConfig, json_schema_extra={"volatile": True})
    """Artifact store shared by every step."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig, json_schema_extra={"volatile": True})
    """Execution settings shared by every step."""
    pretrain: dict[str, Any] = Field(default_factory=dict)
    """The pretrain step's config (PretrainConfig)."""
    scaling: dict[str, Any] = Field(default_factory=dict)
    """The infinite-compute scaling study's config (ScalingStudyConfig)."""
    distill: dict[str, Any] = Field(default_factory=dict)
    """The ensemble distillation step's config (DistillConfig)."""
    soups: dict[str, Any] = Field(default_factory=dict)
    """The model soups step's config (SoupStudyConfig)."""
    autolrs: dict[str, Any] = Field(default_factory=dict)
    """The AutoLRS step's config (AutoLRSFlowConfig)."""

    @model_validator(mode="after")
    def _check_steps(self) -> "MainConfig":
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"steps={unknown}: unknown; allowed: {', '.join(STEPS)}")
        for name in self.steps:  # validate every step's section now, before anything runs
            self.step_config(name)
        return self

    def step_config(self, name: str) -> BaseModel:
        """The step's validated config, with the shared sections filled in where it leaves them unset."""
        raw = dict(getattr(self, name))
        cls = _load(STEPS[name][0])
        shared = {k: getattr(self, k).model_dump() for k in SHARED if k in cls.model_fields and k not in raw}
        try:
            return build(cls, raw | shared)
        except ConfigError as err:
            raise ValueError(str(err).replace("\n  ", f"\n  {name}.")) from None


class MainResult(BaseModel):
    flow_run_id: str | None
    report_uri: str
    store_uri: str
    figures: dict[str, dict[str, Any]]
    """Headline figures per step."""


def _step_fn(name: str) -> Callable[[BaseModel], StepOutcome]:
    return _load(STEPS[name][1])


@flow(name="main", log_prints=True)
def main_job(config: MainConfig = MainConfig()) -> MainResult:
    """Run every step of the recipe and publish one report naming where results and plots are."""
    store = Store(config.store)
    outcomes: dict[str, StepOutcome] = {}
    with compute_session(config.compute.ray_address):
        for name in config.steps:
            outcomes[name] = _step_fn(name)(config.step_config(name))
    key = stable_hash(key_dict(config))
    markdown = "# asymptote: main job report\n\n" + "\n\n".join(o.markdown for o in outcomes.values())
    files = {n: b for o in outcomes.values() for n, b in o.files.items()}
    report = publish_report(store, "main", key, markdown, files)
    return MainResult(
        flow_run_id=flow_run.id,
        report_uri=report,
        store_uri=store.uri(),
        figures={n: o.figures for n, o in outcomes.items()},
    )
