"""The recipe's config: one corpus, one store, the chain scaling -> distillation -> soups -> final model.

Pure configuration (pydantic, no torch): `asymptote recipe` validates it, and names a wrong field,
before the training stack is imported. The chain's result types (`HandOver`, `RecipeResult`) sit at
the end.

Only the first stage is a whole study config (`scaling`); the later stages hold just what they choose
for themselves (students, fine-tunes, soups). Their teachers, base and members are not settings: the
flow passes them in from the scaling study's result as run references (`distill_config`,
`soups_config`), so they enter every downstream cache key through those references.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from asymptote.config import ComputeConfig, DataConfig, ModelConfig, Section, StoreConfig, volatile
from asymptote.distill_config import (
    DistillConfig,
    DistillResult,
    EvaluationConfig,
    SamplingConfig,
    StudentConfig,
)
from asymptote.ladder import Ladder
from asymptote.refs import DataRef
from asymptote.scaling_config import ScalingStudyConfig, ScalingStudyResult
from asymptote.soups_config import (
    BasinConfig,
    MergeOptions,
    SoupOptions,
    SoupStudyConfig,
    SoupStudyResult,
    SweepConfig,
)

SHARED = ("data", "store", "compute")
"""Sections set once for the whole recipe and copied into every stage."""


class DistillStage(Section):
    """Distillation from the scaling study's members: what the students are and how they are chosen."""

    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """Synthetic text from the members' ensemble (n_sequences is set from student.grid.synthetic)."""
    student: StudentConfig = Field(default_factory=StudentConfig)
    """Students (one per method, the single model's size) and their certified search on validation."""
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    """Bootstrap of the retained fraction on test."""


def _sweep() -> SweepConfig:
    # Lengths relative to the base member's own steps and learning rates found by a basin probe from its
    # peak: nothing absolute that would have to be re-tuned when the scaling stage changes.
    return SweepConfig(n_models=4, steps_fraction=[0.1, 0.2], basin=BasinConfig(rungs=2))


class SoupStage(Section):
    """Soups of fine-tunes of the best member, and the members' naive and aligned averages."""

    sweep: SweepConfig = Field(default_factory=_sweep)
    """Fine-tunes of the base (the member with the lowest validation loss)."""
    soups: SoupOptions = Field(default_factory=lambda: SoupOptions(eval_windows=128, learned_steps=20))
    """Which soups; held-out and test are halves of the validation split (the soups' own choices)."""
    merges: MergeOptions = Field(default_factory=MergeOptions)
    """Which merges of the fine-tunes, relative to the base."""


class RecipeConfig(Section):
    """From a pile of text to the best model in one call. Defaults: the tiny scale (minutes on 2 cores)."""

    name: str = volatile("recipe")
    """Label shown in reports and progress."""
    data: DataConfig = Field(default_factory=DataConfig)
    """The corpus of every stage: train (every run), validation (every choice), test (every figure)."""
    scaling: ScalingStudyConfig = Field(default_factory=ScalingStudyConfig)
    """Stage 1: certified searches (standard, regularized), members at the paper's recipe, fits and
    asymptotes. Its data, store and compute are the recipe's own (set them at the top level)."""
    size: int = -1
    """Index into scaling.sizes of the size whose single models and members go down the chain (-1: largest)."""
    distill: DistillStage = Field(default_factory=DistillStage)
    """Stage 2: students distilled from that size's members."""
    soups: SoupStage = Field(default_factory=SoupStage)
    """Stage 3: soups of fine-tunes of the best member, and the members' aligned average."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution (never part of a cache key)."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store (never part of a cache key)."""

    @model_validator(mode="after")
    def _check(self) -> "RecipeConfig":
        given = sorted(set(SHARED) & self.scaling.model_fields_set)
        if given:
            raise ValueError(
                f"scaling.{given[0]} is set: the recipe's stages share one {given[0]}; set it at the top level"
            )
        n = len(self.scaling.sizes)
        if not -n <= self.size < n:
            raise ValueError(f"size={self.size}: no such index; scaling.sizes has {n} entries (0..{n - 1})")
        if self.scaling.ensemble.members < 2:
            raise ValueError(
                f"scaling.ensemble.members={self.scaling.ensemble.members}: the recipe distils and "
                "averages the members, so it needs at least 2"
            )
        self.distill_config("runs/single", ["runs/m1", "runs/m2"])  # the stages' own cross-field checks
        self.soups_config("runs/m1", ["runs/m1", "runs/m2"])
        return self

    def shared(self) -> dict[str, Any]:
        return {k: getattr(self, k).model_dump() for k in SHARED}

    def scaling_config(self) -> ScalingStudyConfig:
        """Stage 1's config: the scaling section with the recipe's data, store and compute."""
        fields = self.scaling.model_dump(exclude=set(SHARED)) | self.shared()
        return ScalingStudyConfig.model_validate(fields | {"name": f"{self.name}-scaling"})

    @property
    def model(self) -> ModelConfig:
        """The shape whose models go down the chain."""
        return self.scaling.sizes[self.size]

    def budget_data(self) -> dict[str, Any]:
        """The corpus cut to the study's token budget, as every run of the chain trains on it."""
        return self.data.model_dump() | {"max_train_tokens": self.scaling.tokens}

    def distill_config(self, single: str, members: list[str]) -> DistillConfig:
        """Stage 2's config: students of the chosen size, taught by exactly these runs."""
        s = self.scaling
        fields = {
            "name": f"{self.name}-distill",
            "model": self.model.model_dump(),
            "budget": s.tokens,
            "train": s.train.model_dump(),
            "search": s.search.model_dump(),
            "ensemble": s.ensemble.model_dump(),
            "teacher": {"members": list(members), "single": single},
            **self.distill.model_dump(),
        }
        return DistillConfig.model_validate(fields | self.shared())

    def soups_config(self, base: str, members: list[str]) -> SoupStudyConfig:
        """Stage 3's config: fine-tunes of `base`, soups of them, and the averages of `members`."""
        fields = {
            "name": f"{self.name}-soups",
            "base": {"run": base, "model": self.model.model_dump()},
            "independent": {"runs": list(members)},
            **self.soups.model_dump(),
        }
        return SoupStudyConfig.model_validate(fields | self.shared() | {"data": self.budget_data()})


# ----------------------------------------------------------------------------- results


class HandOver(BaseModel):
    """What the scaling study hands down the chain: run references of one size."""

    size: str
    single: dict[str, str]
    """Recipe (standard, regularized) -> its certified optimum's run at the study's budget."""
    members: list[str]
    member_val: list[float]
    """Validation loss of each member (the base's choice)."""
    base: str
    """The member with the lowest validation loss: what the soups fine-tune."""


class RecipeResult(BaseModel):
    """What `run_recipe` returns: each stage's own result and the ladder."""

    flow_run_id: str | None
    data: DataRef
    handover: HandOver
    scaling: ScalingStudyResult
    distill: DistillResult
    soups: SoupStudyResult
    ladder: Ladder
    report_uri: str
