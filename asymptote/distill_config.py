"""The distillation study's config: teachers, sampling, students and the distillation methods.

Pure configuration (pydantic, no torch): `asymptote distill` validates it, and names a wrong field,
before the training stack is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    Section,
    StoreConfig,
    TrainConfig,
    known_names,
)


class SamplingConfig(Section):
    """How synthetic sequences are drawn from a teacher."""

    n_sequences: int = Field(256, ge=1)
    """Sequences to generate; each is block_size + 1 tokens (one training window of the student)."""
    temperature: float = Field(1.0, ge=0)
    """Softmax temperature (1: the teacher's own distribution, as the paper; 0: greedy)."""
    batch_size: int = Field(64, ge=1)
    """Sequences generated together in one chunk; a chunk is the unit of seeding and of work."""
    prompt_tokens: int = Field(1, ge=1)
    """Tokens of real training text that start each sequence (a byte model has no begin-of-text token)."""
    seed: int = 0
    """Seed of the prompts and of the draws; chunk c uses (seed, c)."""
    combine: Literal["logits", "probs"] = "logits"
    """How an ensemble's members are combined: average logits (the paper) or probabilities."""

    def n_chunks(self) -> int:
        return -(-self.n_sequences // self.batch_size)

    def chunk_size(self, chunk: int) -> int:
        return min(self.batch_size, self.n_sequences - chunk * self.batch_size)


@dataclass(frozen=True)
class Method:
    """How one student learns: from which teacher, at which level, with how much synthetic data."""

    teacher: Literal["ensemble", "single"]
    level: Literal["sequence", "token"]
    synthetic_weight: float | None = None  # None: StudentConfig.synthetic_weight


# Explicit registry of distillation methods.
METHODS: dict[str, Method] = {
    "sequence": Method("ensemble", "sequence"),
    "synthetic_only": Method("ensemble", "sequence", synthetic_weight=1.0),
    "token_kl": Method("ensemble", "token"),
    "self": Method("single", "sequence"),
}


def _train(**fields: Any) -> TrainConfig:
    base = {
        "lr": 3e-3,
        "max_steps": 200,
        "batch_size": 16,
        "warmup_steps": 20,
        "eval_every": 100,
        "eval_windows": 64,
        "log_every": 20,
        "checkpoint_every": 100,
    }
    return TrainConfig(**(base | fields))


class TeacherConfig(Section):
    """Where the teachers come from: runs already in the store, or trained here."""

    members: list[str] = Field(default_factory=list)
    """Ensemble members already in the store (runs/<key> paths or URIs); empty: train n_members here."""
    single: str | None = None
    """The regularized single model of the student's size (path or URI); None: the first member."""
    n_members: int = Field(2, ge=1)
    """Ensemble size K when members are trained here (the paper: 8, a student 1/8 of the ensemble)."""
    train: TrainConfig = Field(default_factory=lambda: _train(weight_decay=0.5))
    """The regularized recipe of the single model and every member (member i adds i to both seeds)."""


class StudentConfig(Section):
    """How students are trained: from scratch, at the single model's size."""

    methods: list[str] = Field(default_factory=lambda: ["sequence", "token_kl"])
    """Students to train, one per method: sequence, synthetic_only, token_kl, self."""
    train: TrainConfig = Field(default_factory=lambda: _train(weight_decay=0.1))
    """Student recipe (the paper: weight decay 0.1)."""
    synthetic_weight: float = Field(0.75, ge=0, le=1)
    """Fraction of sequence-level batches drawn from synthetic data (the paper: 0.75 to 0.9)."""
    kl_temperature: float = Field(1.0, gt=0)
    """Softmax temperature of the token-level KL."""
    kl_alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the token-level KL against cross-entropy on the real next token (the bench recipe uses
    0.9, which beat 0.5 there; at this tiny default scale 0.5 does better)."""

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return known_names(v, METHODS, "methods", allow_empty=False)


class DistillConfig(Section):
    """Ensemble distillation study. The defaults are the main job's tiny step (about a minute on 2 cores)."""

    name: str = Field("distill", json_schema_extra={"volatile": True})
    """Label shown in reports and progress."""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="cpu-0.1m"))
    """Shape of the single model, of every member and of every student."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus (real data): training text of teachers and students, validation split of every loss."""
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    """Teachers: given runs or trained here."""
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(n_sequences=512))
    """Synthetic data for sequence-level students (each sequence is one student window)."""
    student: StudentConfig = Field(default_factory=StudentConfig)
    """Students and their methods."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig, json_schema_extra={"volatile": True})
    """Execution (never part of a cache key)."""
    store: StoreConfig = Field(default_factory=StoreConfig, json_schema_extra={"volatile": True})
    """Artifact store (never part of a cache key)."""
