"""The distillation study's config: teachers as the scaling study makes them, sampling, students' search;
and what the study returns (DistillResult: references into the store and every figure).

Pure configuration (pydantic, no torch): `asymptote distill` validates it, and names a wrong field,
before the training stack is imported.

A baseline searched as hard as the method: by default the single model's grid spans the students'
(their epochs, weight decays and learning-rate multiples) with their run cap (`baseline`); with
`edges.extend`, a choice on a grid edge grows that grid until the choice is interior or a stated
hard limit is reached, for the single model and every student alike. `seeds` retrains the single
model, each chosen student and the no-teacher control (`control`) at their chosen settings, so every
interval carries seed noise as well as test-window noise.

The single model and the ensemble members are built exactly as the scaling study builds them (the
same `train` template, `search` and `ensemble` sections), so a study already in the store is reused
run for run. Students train with compute to spare: their epochs, weight decay, amount of synthetic
data, mixing weight and KL weight are chosen by a certified coordinate descent on validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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
from asymptote.refs import DataRef, RunRef
from asymptote.scaling_config import EnsembleConfig, SearchConfig, token_budget
from asymptote.search_space import Walk


class SamplingConfig(Section):
    """How synthetic sequences are drawn from a teacher."""

    n_sequences: int = Field(256, ge=1)
    """Sequences to generate; each is block_size + 1 tokens (one training window of the student). The
    distillation flow sets it from the largest synthetic amount its students may use."""
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
    """How one student learns from the ensemble: its loss and whether synthetic text enters its batches."""

    objective: Literal["ce", "token_kl"]
    synthetic: bool

    @property
    def axes(self) -> tuple[str, ...]:
        """The student hyper-parameters this method's search tunes."""
        return (
            ("epochs", "weight_decay", "lr_scale")
            + (("synthetic", "mix") if self.synthetic else ())
            + (("alpha",) if self.objective == "token_kl" else ())
        )


# Explicit registry of distillation methods.
METHODS: dict[str, Method] = {
    "sequence": Method("ce", synthetic=True),  # the paper: synthetic text mixed with real, cross-entropy
    "token_kl": Method(
        "token_kl", synthetic=False
    ),  # KL to the ensemble's averaged distribution on real text
    "combined": Method("token_kl", synthetic=True),  # KL on real and synthetic tokens
}
PAPER_METHOD = "sequence"  # the paper's own method: the headline; the others are this project's extensions
SYNTHETIC_VAL_FRACTION = 0.05  # share of sampled sequences kept as the synthetic artifact's validation split
STUDENT_AXES = ("epochs", "weight_decay", "synthetic", "mix", "alpha", "lr_scale")


class StudentPoint(NamedTuple):
    """One student setting. epochs: compute in passes over the real token budget, whatever the mix."""

    epochs: float
    weight_decay: float
    synthetic: float
    """Synthetic tokens the student may draw from, as a multiple of the real token budget (0: none)."""
    mix: float
    """Fraction of each batch's sequences that are synthetic."""
    alpha: float
    """Weight of the token-level KL against cross-entropy on the next token (token_kl methods)."""
    lr_scale: float = 1.0
    """The student's learning rate as a multiple of the single model's."""

    def label(self) -> str:
        return (
            f"ep={self.epochs:g} wd={self.weight_decay:g} lr={self.lr_scale:g}x syn={self.synthetic:g}xD mix={self.mix:g} "
            f"alpha={self.alpha:g}"
        )


def _increasing(name: str, values: list[float]) -> list[float]:
    if not values or any(b <= a for a, b in zip(values, values[1:], strict=False)) or values[0] < 0:
        raise ValueError(f"{name}={values} must be a non-empty, strictly increasing list of values >= 0")
    return values


class StudentGrid(Section):
    """The values each student's coordinate descent may visit (neighbours are adjacent entries).
    An axis with one value is not searched."""

    epochs: list[float] = Field(default_factory=lambda: [1, 2, 4])
    """Student compute in passes over the real token budget."""
    weight_decay: list[float] = Field(default_factory=lambda: [0.1, 0.4])
    """AdamW weight decays."""
    synthetic: list[float] = Field(default_factory=lambda: [1.0])
    """Synthetic tokens as multiples of the real token budget (sampled once, at the largest value)."""
    mix: list[float] = Field(default_factory=lambda: [0.5])
    """Fractions of each batch that are synthetic."""
    alpha: list[float] = Field(default_factory=lambda: [1.0])
    """KL weights (1: pure distillation; below 1 adds cross-entropy on the next token)."""
    lr_scale: list[float] = Field(default_factory=lambda: [1.0])
    """Learning rates as multiples of the single model's optimum (a student trains longer, on other
    targets, than the model whose rate it would otherwise inherit)."""

    @field_validator("epochs", "weight_decay", "synthetic", "mix", "alpha", "lr_scale")
    @classmethod
    def _check(cls, v: list[float], info) -> list[float]:
        v = _increasing(info.field_name, v)
        if info.field_name in ("mix", "alpha") and v[-1] > 1:
            raise ValueError(f"{info.field_name}={v}: fractions must lie in [0, 1]")
        if info.field_name in ("epochs", "synthetic", "lr_scale") and v[0] == 0:
            why = {
                "synthetic": "a student without synthetic data is token_kl",
                "epochs": "a student must train",
                "lr_scale": "a learning rate of 0 trains nothing",
            }[info.field_name]
            raise ValueError(f"{info.field_name}={v} must be > 0 ({why})")
        return v


class StudentStart(Section):
    """Where each student's descent starts; None: derived from the teachers (snapped to the grid)."""

    epochs: float | None = None
    """None: the grid value nearest the members' epochs."""
    weight_decay: float | None = None
    """None: the grid value nearest the single model's optimal weight decay."""
    synthetic: float | None = None
    """None: the grid's middle value."""
    mix: float | None = None
    """None: the grid's middle value."""
    alpha: float | None = None
    """None: the grid's largest value."""
    lr_scale: float | None = None
    """None: the grid value nearest 1 (the single model's learning rate)."""


class StudentConfig(Section):
    """Students: one per method, at the single model's size, each with its own certified search."""

    methods: list[str] = Field(default_factory=lambda: list(METHODS))
    """Students to train: sequence, token_kl, combined."""
    grid: StudentGrid = Field(default_factory=StudentGrid)
    """Search space of the students' hyper-parameters."""
    start: StudentStart = Field(default_factory=StudentStart)
    """Start of every student's descent."""
    max_runs: int | None = Field(None, ge=1)
    """Cap on distinct points per student's descent (None: until certified); a capped search is reported as such."""
    walk: Walk = "neighbourhood"
    """How each student's descent moves: every neighbour of the best point per round, or a cyclic line
    search (one axis at a time, fewer runs per move); both stop at a certified point."""
    kl_temperature: float = Field(1.0, gt=0)
    """Softmax temperature of the token-level KL."""
    curve_points: int = Field(8, ge=1)
    """Validation evaluations along each student run (its learning curve)."""

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return known_names(v, METHODS, "methods", allow_empty=False)

    def axes(self, method: str) -> tuple[str, ...]:
        """The method's axes that have more than one grid value."""
        return tuple(a for a in METHODS[method].axes if len(getattr(self.grid, a)) > 1)


class TeacherConfig(Section):
    """Teachers given as runs in the store; empty: built as the scaling study builds them."""

    members: list[str] = Field(default_factory=list)
    """Ensemble members already in the store (runs/<key> paths or URIs); empty: trained (or reused) here."""
    single: str | None = None
    """The regularized single model of the student's size (path or URI); None: the certified search's optimum."""


class EvaluationConfig(Section):
    """How figures are reported on the test split."""

    n_boot: int = Field(1000, ge=10)
    """Bootstrap resamples of the test windows."""
    level: float = Field(0.95, gt=0, lt=1)
    """Confidence level of the intervals."""
    seed: int = 0
    """Seed of the bootstrap."""


class BaselineConfig(Section):
    """How hard the single model (the baseline every retained fraction divides by) is searched."""

    match_students: bool = True
    """Search the single model over the students' span too: its epochs and weight decays joined with the
    students', its learning rates joined with search.start.lr times each student lr multiple, and the
    students' run cap (student.max_runs) instead of search.max_runs, and their walk."""


LINEAR_AXES = ("mix", "alpha")  # fractions: a grid grows past its edge by its last step, not its last ratio


class EdgeConfig(Section):
    """Grids that grow when a search's choice sits on an edge (the single model's and every student's).

    An axis grows by the step between its two outermost values (a ratio; for mix and alpha a
    difference), one value at a time, while the choice stays on that edge and the next value lies
    within the axis's hard limit [low, high] (a step past a limit lands on the limit itself; a ratio
    step down toward a low limit of 0, which ratios never reach, goes to 0).
    A choice still on an edge after that is reported (`single_at_edge`, each student's at_edge)."""

    extend: bool = False
    """Grow grids past a chosen edge (the distillation bench's protocol turns it on)."""
    epochs: list[float] = Field(default_factory=lambda: [0.5, 512])
    """Hard limits of epochs (the single model's and the students')."""
    weight_decay: list[float] = Field(default_factory=lambda: [0.0, 6.4])
    """Hard limits of weight decay."""
    lr_scale: list[float] = Field(default_factory=lambda: [0.03, 30])
    """Hard limits of the learning rate as a multiple of search.start.lr (single model) or of the single
    model's chosen rate (students)."""
    synthetic: list[float] | None = None
    """Hard limits of the synthetic amount; None: the grid's own span (synthetic text is sampled once,
    before the students search, at the largest amount they may reach: this limit's top)."""
    mix: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    """Hard limits of the synthetic fraction of a batch."""
    alpha: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    """Hard limits of the KL weight."""

    @field_validator("epochs", "weight_decay", "lr_scale", "synthetic", "mix", "alpha")
    @classmethod
    def _pair(cls, v: list[float] | None, info) -> list[float] | None:
        if v is not None and (len(v) != 2 or not 0 <= v[0] <= v[1]):
            raise ValueError(f"{info.field_name}={v} must be [low, high] with 0 <= low <= high")
        return v

    def limits(self, axis: str, grid: list[float]) -> tuple[float, float]:
        """[low, high] of an axis; the synthetic amount defaults to its grid's span."""
        pair = getattr(self, axis)
        return (grid[0], grid[-1]) if pair is None else (pair[0], pair[1])


REPLICA_SEED_STRIDE = 100  # replica r trains at seed offset + 100 r: apart from members' seeds 1..K


def _tiny_train() -> TrainConfig:  # the scaling study's default template: its runs are reused
    return TrainConfig(
        batch_size=16, warmup_steps=5, eval_every=1_000_000, log_every=1_000_000, checkpoint_every=1_000_000
    )


class DistillConfig(Section):
    """Ensemble distillation study. The defaults are the main job's tiny step and share the scaling
    study's defaults (its cpu-0.1m runs are reused when it ran first)."""

    name: str = volatile("distill")
    """Label shown in reports and progress."""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="cpu-0.1m"))
    """Shape of the single model, of every member and of every student."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus: real training text (cut to the budget), validation (every choice) and test (every figure)."""
    budget: int | None = Field(20_000, ge=1)
    """Real training tokens D of every model (data.max_train_tokens); None: data.max_train_tokens."""
    train: TrainConfig = Field(default_factory=_tiny_train)
    """Optimisation template (the scaling study's): everything but lr, weight decay, epochs and seeds."""
    search: SearchConfig = Field(default_factory=SearchConfig)
    """The certified search of the regularized single model (the scaling study's)."""
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    """Members: the single optimum with epochs x epoch_factor, weight decay x weight_decay_factor, seed = k."""
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    """Teachers given as runs instead (optional)."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """Synthetic data from the ensemble (n_sequences is set from student.grid.synthetic)."""
    student: StudentConfig = Field(default_factory=StudentConfig)
    """Students and their search."""
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    """Test-split figures and their intervals."""
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    """How hard the single model is searched (by default over the students' span and run cap)."""
    edges: EdgeConfig = Field(default_factory=EdgeConfig)
    """Grids that grow past a chosen edge, up to hard limits."""
    seeds: int = Field(1, ge=1)
    """Independently trained seeds of the single model, the control and each chosen student: the
    search's own run, then replicas at train_seed = data_seed = seed_offset + 100 r (r = 1, 2, ...).
    Members are seeds already (member k: seed_offset + k)."""
    seed_offset: int = Field(0, ge=0)
    """Added to every training seed and to the sampling seed (a replication: bench --seed-offset)."""
    control: str | None = None
    """The method whose chosen settings and compute (epochs, steps, weight decay, learning rate) a
    no-teacher control copies, trained on real text only, so that "more compute" and "taught by the
    ensemble" are separate figures (the bench: combined); None (or a method not trained): no control."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution (never part of a cache key)."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store (never part of a cache key)."""

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        self.tokens  # noqa: B018 -- raises on a missing or contradictory budget
        s = self.student.start
        for axis in STUDENT_AXES:
            value = getattr(s, axis)
            if value is not None and value not in getattr(self.student.grid, axis):
                raise ValueError(
                    f"student.start.{axis}={value} is not on student.grid.{axis}="
                    f"{getattr(self.student.grid, axis)}; pick one of those values"
                )
        if self.control is not None and self.control not in METHODS:
            raise ValueError(f"control={self.control!r}: not a method; one of {', '.join(METHODS)} or null")
        return self

    def replica_seed(self, r: int) -> int:
        """The training seed of replica r (r = 0: the template's own seed, as the search trained it)."""
        return self.train.train_seed + self.seed_offset + (REPLICA_SEED_STRIDE * r if r else 0)

    @property
    def control_method(self) -> str | None:
        """The method the control copies, when that method is trained here."""
        return self.control if self.control in self.student.methods else None

    @property
    def tokens(self) -> int:
        return token_budget(self.budget, self.data)

    def synthetic_tokens(self, amount: float) -> int:
        """Synthetic training tokens a student with `amount` x the budget uses: whole sequences, at least one."""
        length = self.model.block_size + 1
        return max(1, math.floor(amount * self.tokens / length)) * length

    def sequences_needed(self) -> int:
        """Sequences to sample: the largest synthetic amount any chosen method may use, plus the
        artifact's own validation share (SYNTHETIC_VAL_FRACTION of the sequences)."""
        if not any(METHODS[m].synthetic for m in self.student.methods):
            return 0
        grid = self.student.grid.synthetic
        top = self.edges.limits("synthetic", grid)[1] if self.edges.extend and len(grid) > 1 else grid[-1]
        need = self.synthetic_tokens(max(top, grid[-1])) // (self.model.block_size + 1)
        return math.ceil(need / (1 - SYNTHETIC_VAL_FRACTION)) + 1


# ----------------------------------------------------------------------------- results


class Teachers(BaseModel):
    single: str
    """Store-relative path of the single model."""
    members: list[str]
    """Store-relative paths of the ensemble members."""
    trained_here: bool
    """False when the runs were given in teacher.members (a run reused from the store is still 'here')."""
    single_point: dict[str, float] | None = None
    """The certified regularized optimum (lr, weight_decay, epochs), when searched here."""
    certified: bool | None = None
    search_points: int = 0
    grid: dict[str, list[float]] | None = None
    """The single model's final grid (grown past chosen edges when edges.extend), when searched here."""
    at_edge: list[str] = Field(default_factory=list)
    """Searched axes whose final choice still sits on the final grid's edge (a hard limit stopped it)."""
    seed_runs: list[str] = Field(default_factory=list)
    """The single model's runs, one per seed (the first is the search's own); given teachers: the one run."""


class Figure(BaseModel):
    """One reported figure from the hierarchical bootstrap (asymptote.stats.figure)."""

    estimate: float
    ci: list[float]
    p_direction: float
    """Share of bootstrap draws on the estimate's side of the figure's reference (see DistillResult.references)."""


class StudentOutcome(BaseModel):
    method: str
    run: RunRef
    point: dict[str, float]
    """The chosen settings (axes a method does not use keep their start values)."""
    certified: bool
    points: int
    """Distinct settings the search trained."""
    steps: int
    """Optimiser steps of the chosen student."""
    search_steps: int
    """Optimiser steps of every run the search trained (what choosing it cost)."""
    synthetic_tokens: int
    """Synthetic training tokens the chosen student drew from (0: none)."""
    val_loss: float
    test_loss: float
    test_bpb: float
    retained: float | None
    """(L_single - L_student) / (L_single - L_ensemble) on test; None when the ensemble's gain is within its noise."""
    retained_ci: list[float] | None
    curve: list[tuple[int, float]]
    """(step, validation loss) along the chosen run."""
    grid: dict[str, list[float]] = Field(default_factory=dict)
    """The final grid of this method's search (grown past chosen edges when edges.extend)."""
    at_edge: list[str] = Field(default_factory=list)
    """Searched axes whose final choice still sits on the final grid's edge."""
    seed_runs: list[str] = Field(default_factory=list)
    """The chosen student's runs, one per seed (the first is the search's own)."""
    seed_losses: list[float] = Field(default_factory=list)
    """Test loss of each seed; test_loss is their mean."""
    retained_p_direction: float | None = None
    """Share of bootstrap draws in which the retained fraction is on the estimate's side of 0."""


class ControlOutcome(BaseModel):
    """The no-teacher control: real text only, at a chosen student's settings and compute."""

    method: str
    """The student whose settings (epochs, steps, weight decay, learning rate) it copies."""
    point: dict[str, float]
    steps: int
    seed_runs: list[str]
    seed_losses: list[float]
    test_loss: float
    """Mean over seeds."""


class DistillResult(BaseModel):
    """What `distill` returns: references into the store and every loss (figures on the test split)."""

    flow_run_id: str | None
    data: DataRef
    teachers: Teachers
    split: str = "test"
    single_loss: float
    ensemble_loss: float
    single_bpb: float
    ensemble_bpb: float
    gain: float
    gain_ci: list[float]
    gain_resolved: bool
    """False when the ensemble's gain's interval includes 0: retained is then not defined."""
    test_windows: int
    val: dict[str, Any]
    """Validation losses: single, ensemble, each member, the first-k ensembles (the scaling study's figures)."""
    params: int
    """Parameters of the single model (= each member = each student)."""
    synthetic: DataRef | None
    synthetic_tokens: int
    """Tokens sampled from the ensemble (training and validation shares of the artifact)."""
    students: dict[str, StudentOutcome]
    report_uri: str
    control: ControlOutcome | None = None
    paper_method: str = PAPER_METHOD
    """The paper's method (sequence-level distillation): the headline; the other methods are extensions."""
    seeds: dict[str, int] = Field(default_factory=dict)
    """Independently trained seeds per arm (single, control, each student; the ensemble is one of K members)."""
    seed_losses: dict[str, list[float]] = Field(default_factory=dict)
    """Test loss of each seed of each arm (the ensemble: its one ensemble)."""
    figures: dict[str, Figure] = Field(default_factory=dict)
    """Test loss of single, control, ensemble and each student: estimate, interval, p_direction."""
    retained_figures: dict[str, Figure | None] = Field(default_factory=dict)
    """Per method, and for the control: the retained fraction with its interval (None: gain unresolved)."""
    teacher_effect: Figure | None = None
    """Control's loss minus the student's of the same settings (nats): what the teachers add beyond compute."""
    resampled: str = ""
    """What the bootstrap resampled (seeds, then test windows)."""
    references: dict[str, str] = Field(default_factory=dict)
    """Per figure, the reference its p_direction compares it with."""

    @property
    def member_losses(self) -> list[float]:
        return self.val["member_losses"]

    @property
    def retained(self) -> dict[str, float | None]:
        return {m: s.retained for m, s in self.students.items()}

    def ranked(self) -> list[StudentOutcome]:
        return sorted(self.students.values(), key=lambda s: s.test_loss)

    def tracked_models(self) -> list[dict[str, Any]]:
        """The teachers' ensemble, which no training run stands for, with its test figures, for experiment
        tracking (its members and the students are runs, tracked as such)."""
        metrics = {"test_loss": self.ensemble_loss, "test_bpb": self.ensemble_bpb}
        name = f"ensemble of {len(self.teachers.members)}"
        return [{"name": name, "role": "ensemble", "rel": None, "metrics": metrics}]
