"""The main job's config: the steps to run, shared sections, one section per step. Pure configuration.

The step names and their config classes come from the method registry (`asymptote.flows.registry`),
which builds the class with `main_config_class`; nothing here names a method. Each step's section is
validated as its method's config (a pure module too), so `asymptote run` names a wrong field before
the training stack is imported.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, create_model, model_validator

from asymptote.config import (
    ComputeConfig,
    ConfigError,
    DataConfig,
    Section,
    StoreConfig,
    build,
    load,
    volatile,
)

SHARED = ("data", "store", "compute")


class MainConfigBase(Section):
    """The main job's recipe. Shared sections (data, store, compute) flow into every step
    unless the step's own section sets them."""

    STEP_CONFIGS: ClassVar[dict[str, str]] = {}
    """Step name -> its config class ("module:attribute"), filled by `main_config_class`."""

    steps: list[str] = Field(default_factory=lambda: ["pretrain"])
    """Steps to run, in order; names from the method registry."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus shared by every step."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store shared by every step."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution settings shared by every step."""

    @model_validator(mode="after")
    def _check_steps(self) -> "MainConfigBase":
        unknown = [s for s in self.steps if s not in self.STEP_CONFIGS]
        if unknown:
            raise ValueError(f"steps={unknown}: unknown; allowed: {', '.join(self.STEP_CONFIGS)}")
        for name in self.steps:  # validate every step's section now, before anything runs
            self.step_config(name)
        return self

    def step_config(self, name: str) -> BaseModel:
        """The step's validated config, with the shared sections filled in where it leaves them unset."""
        raw = dict(getattr(self, name))
        cls = load(self.STEP_CONFIGS[name])
        shared = {k: getattr(self, k).model_dump() for k in SHARED if k in cls.model_fields and k not in raw}
        try:
            return build(cls, raw | shared)
        except ConfigError as err:
            raise ValueError(str(err).replace("\n  ", f"\n  {name}.")) from None


def main_config_class(steps: dict[str, tuple[str, str]]) -> type[MainConfigBase]:
    """The main job's config class for `steps`: name -> (config class "module:attribute", one-line help).
    One dict section per step, validated as that step's config."""
    cls = create_model(
        "MainConfig",
        __base__=MainConfigBase,
        __doc__=MainConfigBase.__doc__,
        **{
            name: (
                dict[str, Any],
                Field(default_factory=dict, description=f"The {name} step's config: {help}"),
            )
            for name, (_, help) in steps.items()
        },
    )
    cls.STEP_CONFIGS = {name: target for name, (target, _) in steps.items()}
    return cls
