"""The main job's config: the steps to run (methods of the registry), shared sections, one section per
method. Pure configuration: each step's section is validated as its method's config (a pure module too),
so `asymptote run` names a wrong field before the training stack is imported.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model, model_validator

from asymptote.config import ComputeConfig, ConfigError, DataConfig, Section, StoreConfig, build
from asymptote.methods import METHODS, load

STEPS = [name for name, m in METHODS.items() if m.in_main]
SHARED = ("data", "store", "compute")


class _MainBase(Section):
    """The main job's recipe. Shared sections (data, store, compute) flow into every step
    unless the step's own section sets them."""

    steps: list[str] = Field(default_factory=lambda: ["pretrain"])
    """Steps to run, in order; names from the method registry."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus shared by every step."""
    store: StoreConfig = Field(default_factory=StoreConfig, json_schema_extra={"volatile": True})
    """Artifact store shared by every step."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig, json_schema_extra={"volatile": True})
    """Execution settings shared by every step."""

    @model_validator(mode="after")
    def _check_steps(self) -> "_MainBase":
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"steps={unknown}: unknown; allowed: {', '.join(STEPS)}")
        for name in self.steps:  # validate every step's section now, before anything runs
            self.step_config(name)
        return self

    def step_config(self, name: str) -> BaseModel:
        """The step's validated config, with the shared sections filled in where it leaves them unset."""
        raw = dict(getattr(self, name))
        cls = load(METHODS[name].config)
        shared = {k: getattr(self, k).model_dump() for k in SHARED if k in cls.model_fields and k not in raw}
        try:
            return build(cls, raw | shared)
        except ConfigError as err:
            raise ValueError(str(err).replace("\n  ", f"\n  {name}.")) from None


# One section per method of the registry, validated as that method's config when the step runs.
MainConfig = create_model(
    "MainConfig",
    __base__=_MainBase,
    __doc__=_MainBase.__doc__,
    **{
        name: (dict[str, Any], Field(default_factory=dict, description=f"The {name} step's config: {m.help}"))
        for name, m in METHODS.items()
        if m.in_main
    },
)
