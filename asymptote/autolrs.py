"""AutoLRS (Jin et al., ICLR 2021): the learning-rate schedule found on the fly by Bayesian optimisation.

Training runs in stages. A stage starts from a snapshot of the whole training state (model, optimizer,
data position, RNG). k trials each train tau' steps from the snapshot at a learning rate proposed by a
fresh Bayesian optimiser over log-LR in [min_lr, max_lr], record their loss curve, forecast the loss it
leads to at step tau (asymptote.forecast) and go back to the snapshot. The tried LR with the lowest
forecast then trains tau steps for real. After each stage tau' and tau double while tau' < tau_max/10;
as in the reference code, the stage after the first one run at that cap (tau' >= tau_max/10) and every
later one score their trials on validation loss instead of training loss.

The range lies around the learning rate the user configured (train.lr), and the warmup climbs to it.
The last `decay_fraction` of the run's steps search no more: the last chosen LR anneals by a cosine to
`decay_floor` times it at the last step (a greedy search at horizon tau never picks the low rates that
pay off only at the end; docs/autolrs.md).

This module holds the controller (every decision, as plain serialisable state) and the loop that drives
any trainer with `train_step / evaluate / snapshot / restore`. It imports neither Ray nor Prefect; the
Ray Train side (broadcasts, store checkpoints) is `autolrs_driver.py`.

Defaults. The reference's constants are k=10, tau'=100, tau=1000, tau_max=8000 for runs of tens of
thousands of steps. The defaults here keep k=10 and every ratio (tau = 10 tau', tau_max = 8 tau, so
three doublings before validation scoring) and scale only the lengths by 1/10 (tau'=10, tau=100,
tau_max=800) for CPU runs of a few thousand steps. docs/autolrs.md lists every departure from the
reference and the measurement behind it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field
from scipy.ndimage import median_filter
from threadpoolctl import threadpool_limits

from asymptote.autolrs_config import AutoLRSOptions
from asymptote.forecast import MIN_POINTS, forecast, noise_scale

# ----------------------------------------------------------------------------- options


def step_law_lr(non_embedding_params: int, tokens: int) -> float:
    """Step Law optimum (Predictable Scale, 2025): lr = 1.79 N^-0.713 D^0.307.

    Fitted on models of 60M-1B parameters and billions of tokens; at CPU scale (~1e5 parameters,
    ~1e6 tokens) it is an extrapolation, which is why only a wide range around it is used as a prior.
    """
    if non_embedding_params < 1 or tokens < 1:
        raise ValueError(f"Step Law needs N >= 1 and D >= 1, got N={non_embedding_params}, D={tokens}")
    return 1.79 * non_embedding_params**-0.713 * tokens**0.307


STEP_LAW_FACTOR = 10.0
"""The Step Law prior's range: [lr/10, 10 lr] around its optimum."""
MAX_LR = 10.0
"""No range reaches above this (the options' own bound on learning rates)."""


def search_range(
    options: AutoLRSOptions, lr: float, non_embedding_params: int, tokens: int
) -> tuple[float, float]:
    """[min_lr, max_lr] of the search: the options' explicit bounds; else, by `range_rule`, within
    range_factor of `lr`, the learning rate the user configured (`user`), or [x/10, 10 x] around the
    Step Law optimum x for the model and tokens (`step_law`). The upper end is capped at MAX_LR."""
    if options.min_lr is not None:
        return options.min_lr, options.max_lr
    if options.range_rule == "step_law":
        centre, factor = step_law_lr(non_embedding_params, tokens), STEP_LAW_FACTOR
    else:
        centre, factor = lr, options.range_factor
    if not 0 < centre / factor < MAX_LR:
        raise ValueError(
            f"learning rate {centre:.3g} / {factor:g} is outside (0, {MAX_LR:g}): no range to search"
        )
    return centre / factor, min(centre * factor, MAX_LR)


# ----------------------------------------------------------------------------- proposers

Seen = list[tuple[float, float]]  # (log lr, score) of the stage's finished trials


def propose_bayes_opt(bounds: tuple[float, float], seen: Seen, seed: int, options: AutoLRSOptions) -> float:
    """The paper's proposer: GP (Matern 2.5) + LCB on the forecast loss, i.e. UCB on its negative.

    The kernel's length scale is kept above 1/20 of the range: with a handful of points, maximum
    likelihood may otherwise shrink it until the GP is uncertain everywhere but on the points
    themselves, and pure exploration then proposes near-duplicates.
    """
    from bayes_opt import BayesianOptimization, UtilityFunction
    from sklearn.gaussian_process.kernels import Matern

    width = bounds[1] - bounds[0]
    opt = BayesianOptimization(
        f=None, pbounds={"log_lr": bounds}, random_state=seed, verbose=0, allow_duplicate_points=True
    )
    opt.set_gp_params(
        kernel=Matern(nu=2.5, length_scale=width / 4, length_scale_bounds=(width / 20, 10 * width))
    )
    for x, y in seen:
        opt.register(params={"log_lr": x}, target=-y)
    with warnings.catch_warnings(), threadpool_limits(1):  # tiny matrices: BLAS threads only contend
        warnings.simplefilter("ignore")
        return float(opt.suggest(UtilityFunction(kind="ucb", kappa=options.kappa))["log_lr"])


def _propose_optuna(sampler: str) -> Callable[..., float]:
    def propose(bounds: tuple[float, float], seen: Seen, seed: int, options: AutoLRSOptions) -> float:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        make = optuna.samplers.GPSampler if sampler == "gp" else optuna.samplers.TPESampler
        dist = {"log_lr": optuna.distributions.FloatDistribution(*bounds)}
        study = optuna.create_study(direction="minimize", sampler=make(seed=seed, n_startup_trials=1))
        for x, y in seen:
            study.add_trial(optuna.trial.create_trial(params={"log_lr": x}, distributions=dist, value=y))
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # experimental-feature notices
            return float(study.ask(dist).params["log_lr"])

    return propose


PROPOSERS: dict[str, Callable[[tuple[float, float], Seen, int, AutoLRSOptions], float]] = {
    "bayes_opt": propose_bayes_opt,
    "optuna_gp": _propose_optuna("gp"),
    "optuna_tpe": _propose_optuna("tpe"),
}


def proposal_seed(seed: int, stage: int, trial: int, attempt: int = 0) -> int:
    """A seed that depends only on (seed, stage, trial, attempt): a resumed stage proposes the same LRs."""
    key = [seed, stage, trial] + ([attempt] if attempt else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


MAX_ASKS = 10
"""Proposals per trial before giving up on the optimiser and taking the middle of the widest gap."""
DUPLICATE = 1e-3
"""Two log-LRs closer than this fraction of the searched log-range are the same LR."""


def widest_gap_middle(bounds: tuple[float, float], xs: list[float]) -> float:
    edges = sorted([bounds[0], bounds[1], *xs])
    lo, hi = max(zip(edges, edges[1:], strict=False), key=lambda p: p[1] - p[0])
    return (lo + hi) / 2


def ask_distinct(ask: Callable[[Seen, int], float], bounds: tuple[float, float], seen: Seen) -> float:
    """A log-LR no trial of the stage has tried. A repeat is told to the optimiser again with its known
    score and the optimiser asked again, as the reference code does (else a trial re-measures a point
    it knows). `ask(told, attempt)` is one proposal given the (log-LR, score) pairs told so far."""
    told = list(seen)
    tol = DUPLICATE * (bounds[1] - bounds[0])
    for attempt in range(MAX_ASKS):
        x = ask(told, attempt)
        known = next((y for sx, y in seen if abs(sx - x) <= tol), None)
        if known is None:
            return x
        told.append((x, known))
    return widest_gap_middle(bounds, [x for x, _ in seen])


# ----------------------------------------------------------------------------- state


class Trial(BaseModel):
    lr: float
    score: float | None = None
    """Forecast loss at the stage's horizon (None while the trial runs)."""
    forecast: float | None = None
    """The forecast itself, before clipping (None when the score is a penalty or the recent level)."""
    scored_by: Literal["forecast", "penalty", "recent"] = "forecast"
    """What the score is: the forecast; a penalty (diverged or unfittable); the recent level (the
    trial's loss rose above the stage's start, so a recovery would be forecast as progress)."""
    ran: int = 0
    """Optimiser steps the trial took (fewer than tau' when it diverged)."""
    steps: list[int] = Field(default_factory=list)
    """Offsets from the stage start of the recorded losses."""
    losses: list[float] = Field(default_factory=list)
    """Training loss per step, or validation loss every few steps in validation mode."""


class Stage(BaseModel):
    index: int
    start_step: int
    trial_steps: int
    """tau' of this stage."""
    stage_steps: int
    """Steps trained at the chosen LR (tau, cut at the end of the run); also the forecast horizon."""
    validation: bool
    """Trials scored on validation loss instead of training loss."""
    start_loss: float | None = None
    trials: list[Trial] = Field(default_factory=list)
    lr: float | None = None
    """The chosen learning rate (the final decay's: the last chosen one, where it starts)."""
    end_lr: float | None = None
    """The final decay's LR at its last step; None for a stage held at `lr`."""

    @property
    def end_step(self) -> int:
        return self.start_step + self.stage_steps

    @property
    def decay(self) -> bool:
        return self.end_lr is not None

    def lr_at(self, step: int) -> float:
        """LR of the step taken at `step` (0-based): `lr`, or on the final decay a cosine from `lr` that
        reaches `end_lr` at the stage's last step. A function of the state alone, so a resumed run
        continues it exactly."""
        if self.end_lr is None:
            return self.lr
        progress = min(1.0, (step - self.start_step + 1) / self.stage_steps)
        return self.end_lr + (self.lr - self.end_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class AutoLRSState(BaseModel):
    """Everything AutoLRS decided and saw so far; JSON-serialisable, saved in every checkpoint."""

    phase: Literal["warmup", "search", "exploit", "done"] = "warmup"
    min_lr: float
    max_lr: float
    lr: float | None = None
    """The learning rate the user configured (train.lr): the warmup's target unless options.warmup_lr."""
    trial_steps: int
    stage_steps: int
    stages: list[Stage] = Field(default_factory=list)
    lrs: list[float] = Field(default_factory=list)
    """Learning rate of every step of the run (trials excluded): the found schedule."""
    losses: list[float] = Field(default_factory=list)
    """Training loss of every step of the run (trials excluded)."""
    trial_steps_spent: int = 0
    """Optimiser steps spent in trials: the search's cost on top of the schedule's own steps."""


# ----------------------------------------------------------------------------- controller


class AutoLRS:
    """The decisions of AutoLRS as methods on a serialisable state; no training happens here."""

    def __init__(self, options: AutoLRSOptions, state: AutoLRSState):
        self.options, self.state = options, state

    @classmethod
    def start(cls, options: AutoLRSOptions, lr_range: tuple[float, float], lr: float) -> "AutoLRS":
        """A fresh controller searching `lr_range`; `lr` is the user's configured learning rate."""
        state = AutoLRSState(
            min_lr=lr_range[0],
            max_lr=lr_range[1],
            lr=lr,
            trial_steps=options.trial_steps,
            stage_steps=options.stage_steps,
        )
        return cls(options, state)

    def state_dict(self) -> dict[str, Any]:
        return self.state.model_dump()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = AutoLRSState.model_validate(state)

    # ------------------------------------------------------------------ queries

    @property
    def stage(self) -> Stage:
        return self.state.stages[-1]

    @property
    def warmup_lr(self) -> float:
        """options.warmup_lr, else the user's lr (a state saved without one: the range's geometric middle)."""
        return self.options.warmup_lr or self.state.lr or math.sqrt(self.state.min_lr * self.state.max_lr)

    def decay_start(self, total: int) -> int:
        """First step of the final decay: the last floor(decay_fraction x total) steps (total: none)."""
        return total - math.floor(self.options.decay_fraction * total)

    @property
    def last_lr(self) -> float:
        """The LR the run holds now: the last stage's, or the warmup's before any stage."""
        return self.state.stages[-1].lr if self.state.stages else self.warmup_lr

    @property
    def validation_mode(self) -> bool:
        """Does the next stage score its trials on validation loss? As in the reference: once a stage
        has run with tau' at its cap (tau' >= tau_max/10), i.e. from the stage after tau' stopped doubling."""
        last = self.state.stages[-1] if self.state.stages else None
        return last is not None and (last.validation or last.trial_steps >= self.options.max_stage_steps / 10)

    def pending_trial(self) -> Trial | None:
        trials = self.stage.trials
        return trials[-1] if trials and trials[-1].score is None else None

    def recent_loss(self, n: int = 10) -> float | None:
        tail = [x for x in self.state.losses[-n:] if math.isfinite(x)]
        return float(np.mean(tail)) if tail else None

    # ------------------------------------------------------------------ decisions

    def begin_stage(self, step: int, total: int, start_loss: float | None) -> None:
        """Open the next stage at `step`. A stage ends by the final decay's start; from there the last
        chosen LR anneals to the end without trials; with too little left before it for a search, the
        stage keeps the last LR."""
        remaining = total - step
        if remaining <= 0:
            self.state.phase = "done"
            return
        s = self.state
        decay_at = self.decay_start(total)
        stage = Stage(
            index=len(s.stages),
            start_step=step,
            trial_steps=s.trial_steps,
            stage_steps=min(s.stage_steps, decay_at - step) if step < decay_at else remaining,
            validation=self.validation_mode,
            start_loss=start_loss,
        )
        if step >= decay_at:  # the final decay: trials here could not pay off before the end
            lr = self.last_lr
            stage.trial_steps, stage.lr, stage.end_lr = 0, lr, self.options.decay_floor * lr
        elif decay_at - step <= s.trial_steps:  # trials longer than what is left cannot pay off
            stage.lr = self.last_lr
        s.stages.append(stage)
        s.phase = "exploit" if stage.lr is not None else "search"

    def propose(self) -> None:
        """Open the stage's next trial at an LR from a fresh optimiser fed this stage's scores."""
        if self.pending_trial() is not None:  # resumed mid-trial: run the same LR again
            return
        stage = self.stage
        seen = [(math.log(t.lr), t.score) for t in stage.trials]
        bounds = (math.log(self.state.min_lr), math.log(self.state.max_lr))
        propose = PROPOSERS[self.options.backend]

        def ask(told: Seen, attempt: int) -> float:
            seed = proposal_seed(self.options.seed, stage.index, len(seen), attempt)
            return propose(bounds, told, seed, self.options)

        log_lr = ask_distinct(ask, bounds, seen)
        lr = min(max(math.exp(log_lr), self.state.min_lr), self.state.max_lr)  # exp(log(x)) may round past x
        stage.trials.append(Trial(lr=lr))

    def trials_done(self) -> bool:
        return self.pending_trial() is None and len(self.stage.trials) >= self.options.trials

    def score(self, ran: int, steps: list[int], losses: list[float]) -> None:
        """Score the pending trial (which ran `ran` steps) by its forecast loss at the stage horizon."""
        trial = self.pending_trial()
        trial.steps, trial.losses, trial.ran = list(steps), list(losses), ran
        trial.score, trial.forecast, trial.scored_by = assess(
            self.stage,
            steps,
            losses,
            self.options.denoiser,
            guard=self.options.spike_guard,
            warmup_loss=self.state.stages[0].start_loss,
        )
        self.state.trial_steps_spent += ran

    def choose(self) -> None:
        """The tried LR with the lowest forecast trains the stage."""
        stage = self.stage
        best = min(stage.trials, key=lambda t: t.score)
        stage.lr = best.lr
        self.state.phase = "exploit"

    def end_stage(self, total: int, start_loss: float | None) -> None:
        """Grow tau' and tau (while tau' < tau_max/10) and open the next stage."""
        s = self.state
        if s.trial_steps < self.options.max_stage_steps / 10:
            s.trial_steps, s.stage_steps = 2 * s.trial_steps, 2 * s.stage_steps
        self.begin_stage(self.stage.end_step, total, start_loss)


def penalty(stage: Stage, losses: list[float]) -> float:
    """Score of a trial that diverged or cannot be forecast: worse than where the stage started."""
    ref = (
        stage.start_loss
        if stage.start_loss is not None
        else next((x for x in losses if math.isfinite(x)), 10.0)
    )
    return 2 * abs(ref) + 1.0


def rose_above_start(
    stage: Stage, losses: list[float], guard: str = "stage", warmup_loss: float | None = None
) -> bool:
    """Is the trial a spike and a recovery, whose fitted exponential would forecast a descent the LR
    did not earn?

    `reference`: as the paper's code, only a validation-scored trial whose loss reached the loss at
    the end of warmup. `stage`: any trial whose loss rose above where its stage started; training
    losses are noisy, so there a running median of 5 must rise more than two noise deviations. The
    stage guard also catches a trial at a higher LR than the stage before, whose loss bumps up for a
    few steps: scored by its level while lower LRs are scored by their forecast, it loses to them, and
    the schedule runs down stage by stage; without it (`reference`) a high LR's spike and recovery is
    forecast as fast progress and wins. docs/autolrs.md compares the two.
    """
    if guard == "reference":
        return stage.validation and warmup_loss is not None and max(losses) >= warmup_loss
    if stage.start_loss is None:
        return False
    if stage.validation:
        return max(losses) >= stage.start_loss
    level = median_filter(np.asarray(losses, dtype=float), size=5, mode="nearest")
    return float(level.max()) > stage.start_loss + 2 * noise_scale(np.asarray(losses, dtype=float))


def assess(
    stage: Stage,
    steps: list[int],
    losses: list[float],
    denoiser: str = "robust",
    guard: str = "stage",
    warmup_loss: float | None = None,
) -> tuple[float, float | None, str]:
    """(score, forecast, what the score is) of a trial's curve; see Trial.scored_by.

    The score is the forecast loss at the horizon clipped to [0, penalty]; the penalty for diverged or
    unfittable curves; the recent level (no extrapolation) for curves that rose above the stage's start."""
    bad = penalty(stage, losses)
    if len(losses) < MIN_POINTS or not all(math.isfinite(x) for x in losses):
        return bad, None, "penalty"
    # no credit for recovering from a spike the LR caused itself
    if rose_above_start(stage, losses, guard, warmup_loss):
        return float(np.mean(losses[-1 if stage.validation else -10 :])), None, "recent"
    try:
        value = forecast(steps, losses, stage.stage_steps, stage.validation, denoiser)
    except (ValueError, np.linalg.LinAlgError):
        return bad, None, "penalty"
    if not math.isfinite(value):
        return bad, None, "penalty"
    return float(min(max(value, 0.0), bad)), value, "forecast"


def trial_score(stage: Stage, steps: list[int], losses: list[float], denoiser: str = "robust") -> float:
    """The score alone (see assess)."""
    return assess(stage, steps, losses, denoiser)[0]


# ----------------------------------------------------------------------------- the training loop


class Trainable(Protocol):
    """What the loop needs of a trainer (asymptote.trainer.Trainer has it)."""

    step: int
    extra: dict[str, Any]
    metrics: list[dict[str, Any]]

    def train_step(self, lr: float) -> Any: ...
    def evaluate(self, max_windows: int | None = None) -> float: ...
    def snapshot(self) -> dict[str, Any]: ...
    def restore(self, snap: dict[str, Any]) -> None: ...


@dataclass
class LoopIO:
    """How the loop talks to its surroundings; the defaults suit one process without a store."""

    mean: Callable[[Any], float] = float
    """Loss of a step averaged over ranks."""
    decide: Callable[["AutoLRS", Callable[[], None]], None] = lambda ctl, fn: fn()
    """Run a decision (on rank 0 only, then share the state, under DDP)."""
    save: Callable[[], None] = lambda: None
    """Write a resumable checkpoint of the trainer (its `extra` already holds the controller state)."""
    report: Callable[[dict[str, Any]], None] = lambda record: None
    log_every: int = 25
    eval_every: int = 250
    checkpoint_every: int = 500
    eval_windows: int = 256
    val_windows: int = 256
    tokens_per_step: int = 0
    window: list[float] = field(default_factory=list)


def _save(ctl: AutoLRS, trainer: Trainable, io: LoopIO) -> None:
    trainer.extra["autolrs"] = ctl.state_dict()
    io.save()


def _record_step(ctl: AutoLRS, trainer: Trainable, io: LoopIO, lr: float, loss: float, total: int) -> None:
    """Book one step of the run proper (not a trial): schedule, loss, periodic metrics and checkpoints."""
    ctl.state.lrs.append(lr)
    ctl.state.losses.append(loss)
    io.window.append(loss)
    step, last = trainer.step, trainer.step == total
    if step % io.log_every == 0 or step % io.eval_every == 0 or last:
        record = {
            "step": step,
            "total_steps": total,
            "lr": lr,
            "train_loss": float(np.mean(io.window)),
            "tokens": step * io.tokens_per_step,
            "phase": ctl.state.phase,
            "stage": len(ctl.state.stages) - 1,
            "trial_steps_spent": ctl.state.trial_steps_spent,
        }
        if step % io.eval_every == 0 or last:
            record["val_loss"] = trainer.evaluate(max_windows=None if last else io.eval_windows)
        io.window.clear()
        trainer.metrics.append(record)
        io.report(record)
    boundary = ctl.state.phase == "exploit" and step == ctl.stage.end_step  # saved by the stage's end anyway
    if step % io.checkpoint_every == 0 and not boundary:
        _save(ctl, trainer, io)


def _start_loss(ctl: AutoLRS, trainer: Trainable, io: LoopIO) -> float | None:
    """The level a stage starts from: validation loss when trials are scored on it, else recent train loss."""
    return trainer.evaluate(max_windows=io.val_windows) if ctl.validation_mode else ctl.recent_loss()


def _warmup(ctl: AutoLRS, trainer: Trainable, total: int, io: LoopIO) -> None:
    n = ctl.options.warmup_steps or 0
    while trainer.step < min(n, total):
        lr = ctl.warmup_lr * (trainer.step + 1) / n
        _record_step(ctl, trainer, io, lr, io.mean(trainer.train_step(lr)), total)
    start = _start_loss(ctl, trainer, io)
    io.decide(ctl, lambda: ctl.begin_stage(trainer.step, total, start))
    _save(ctl, trainer, io)


def _run_trial(ctl: AutoLRS, trainer: Trainable, io: LoopIO) -> tuple[int, list[int], list[float]]:
    """Train tau' steps at the pending trial's LR (fewer once the loss is not finite).

    Returns (steps run, offsets of the recorded losses, the losses)."""
    stage, lr = ctl.stage, ctl.pending_trial().lr
    every = max(1, stage.trial_steps // ctl.options.val_points)
    steps, losses = [], []
    for i in range(stage.trial_steps):
        loss = io.mean(trainer.train_step(lr))
        if not math.isfinite(loss):
            return i + 1, steps + [i], losses + [loss]
        if not stage.validation:
            steps.append(i)
            losses.append(loss)
        elif (i + 1) % every == 0:
            steps.append(i + 1)
            losses.append(trainer.evaluate(max_windows=io.val_windows))
    return stage.trial_steps, steps, losses


def _search(ctl: AutoLRS, trainer: Trainable, total: int, io: LoopIO) -> None:
    """Run the stage's remaining trials from one snapshot, checkpointing after each; then choose."""
    snap = trainer.snapshot()
    while not ctl.trials_done():
        io.decide(ctl, ctl.propose)
        ran, steps, losses = _run_trial(ctl, trainer, io)
        io.decide(ctl, partial(ctl.score, ran, steps, losses))
        trainer.restore(snap)
        trial = ctl.stage.trials[-1]
        io.report(
            {
                "step": trainer.step,
                "total_steps": total,
                "stage": ctl.stage.index,
                "trial": len(ctl.stage.trials),
                "trial_lr": trial.lr,
                "trial_score": trial.score,
            }
        )
        _save(ctl, trainer, io)
    io.decide(ctl, ctl.choose)


def _exploit(ctl: AutoLRS, trainer: Trainable, total: int, io: LoopIO) -> None:
    stage = ctl.stage
    while trainer.step < stage.end_step:
        lr = stage.lr_at(trainer.step)
        _record_step(ctl, trainer, io, lr, io.mean(trainer.train_step(lr)), total)
    start = _start_loss(ctl, trainer, io) if trainer.step < total else None
    io.decide(ctl, lambda: ctl.end_stage(total, start))
    _save(ctl, trainer, io)


PHASES: dict[str, Callable[[AutoLRS, Trainable, int, LoopIO], None]] = {
    "warmup": _warmup,
    "search": _search,
    "exploit": _exploit,
}


def drive(ctl: AutoLRS, trainer: Trainable, total: int, io: LoopIO | None = None) -> AutoLRSState:
    """Train to `total` steps of the run proper (trial steps on top) from wherever ctl and trainer are."""
    io = io or LoopIO()
    while ctl.state.phase != "done":
        PHASES[ctl.state.phase](ctl, trainer, total, io)
    return ctl.state
