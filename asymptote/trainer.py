"""The training step, evaluation, and the state that makes a run resumable bit for bit.

`Trainer` owns model, optimizer, data position and RNG; `fit` drives it with a schedule. Other
drivers (AutoLRS) use the same Trainer through `train_step`, `evaluate`, `snapshot` and `restore`.
Pure torch: no Ray, no Prefect.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn as nn

from asymptote.checkpoint import rng_state, set_rng_state, unwrap
from asymptote.config import TrainConfig
from asymptote.data import to_device
from asymptote.dist import DistEnv
from asymptote.evaluation import mean_loss
from asymptote.model import lm_loss
from asymptote.optim import set_lr

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return lm_loss(model(x), y)


class Batches(Protocol):
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bfloat16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


@dataclass
class Trainer:
    model: nn.Module  # possibly DDP-wrapped and compiled; `unwrap(model)` is the bare Decoder
    optimizer: torch.optim.Optimizer
    batches: Batches
    cfg: TrainConfig
    env: DistEnv
    val_tokens: np.ndarray
    block: int
    objective: Objective = cross_entropy
    micro_batches: int = 1  # gradient accumulation chunks per rank
    step: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # driver state that must survive a resume

    def __post_init__(self):
        self.dtype = autocast_dtype(self.cfg.precision, self.env.device)

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.dtype)

    def train_step(self, lr: float) -> torch.Tensor:
        """One optimiser step at lr; returns this rank's loss as a detached tensor (no host sync)."""
        self.model.train()
        set_lr(self.optimizer, lr)
        x, y = self.batches.next_batch()
        x, y = to_device(x, self.env.device), to_device(y, self.env.device)
        total = torch.zeros((), device=self.env.device)
        for i, (xs, ys) in enumerate(
            zip(x.chunk(self.micro_batches), y.chunk(self.micro_batches), strict=False)
        ):
            last = i == self.micro_batches - 1
            sync = (
                contextlib.nullcontext()
                if last or not hasattr(self.model, "no_sync")
                else self.model.no_sync()
            )
            with sync, self._autocast():
                loss = self.objective(self.model, xs, ys) / self.micro_batches
            loss.backward()
            total += loss.detach()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    def evaluate(self, max_windows: int | None = None) -> float:
        """Mean validation cross-entropy (nats/token); the whole split when max_windows is None."""
        model = unwrap(self.model)
        model.eval()
        return mean_loss(model, self.val_tokens, self.block, self.env, max_windows, dtype=self.dtype)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "batches": self.batches.state_dict(),
            "rng": rng_state(),
            "metrics": list(self.metrics),
            "extra": copy.deepcopy(self.extra),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.batches.load_state_dict(state["batches"])
        set_rng_state(state["rng"])
        self.metrics = list(state["metrics"])
        self.extra = copy.deepcopy(state["extra"])

    def snapshot(self) -> dict[str, Any]:
        """An in-memory copy of the whole state (AutoLRS trials start from and return to it)."""
        return copy.deepcopy(self.state_dict())

    def restore(self, snap: dict[str, Any]) -> None:
        self.load_state_dict(copy.deepcopy(snap))


# ----------------------------------------------------------------------------- the standard driver


class Reporter(Protocol):
    def __call__(self, record: dict[str, Any]) -> None: ...


class Checkpoints(Protocol):
    def save(self, trainer: Trainer) -> None: ...
    def wait(self) -> None: ...  # the last save is durable when this returns


@dataclass
class Window:
    """Running sums between two reports; tokens/s counts training time only (evaluation excluded).

    Time is wall time from the window's start to the moment its loss reaches the host, minus the
    paused stretches (evaluation, reports, checkpoints). On a GPU the host runs ahead of the device,
    so timing each step on the host would count launch time, not compute; the one sync per window
    (`float` of the loss in flush) makes the wall time the device's.
    """

    tokens_per_step: int
    loss_sum: torch.Tensor | None = None
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    paused_s: float = 0.0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.steps += 1

    @contextlib.contextmanager
    def paused(self, env: DistEnv):
        """Leave this block's time out of tokens/s; queued training work is drained first."""
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - t0

    def flush(self, env: DistEnv) -> dict[str, float]:
        loss = float(env.mean(self.loss_sum / self.steps)) if self.steps else float("nan")
        now = time.perf_counter()
        seconds = now - self.started - self.paused_s
        out = {"train_loss": loss, "tok_per_s": self.tokens_per_step * self.steps / max(seconds, 1e-9)}
        self.loss_sum, self.steps, self.started, self.paused_s = None, 0, now, 0.0
        return out


def fit(
    trainer: Trainer,
    schedule: Callable[[int], float],
    total_steps: int,
    report: Reporter,
    checkpoints: Checkpoints,
) -> dict[str, Any]:
    """Train to total_steps from wherever the trainer is; evaluate, report and checkpoint on the way."""
    cfg = trainer.cfg
    window = Window(tokens_per_step=cfg.batch_size * trainer.block)
    started = time.perf_counter()
    while trainer.step < total_steps:
        window.add(trainer.train_step(schedule(trainer.step)))
        step, last = trainer.step, trainer.step == total_steps
        if step % cfg.log_every == 0 or step % cfg.eval_every == 0 or last:
            record = {
                "step": step,
                "total_steps": total_steps,
                "lr": schedule(step - 1),
                **window.flush(trainer.env),
                "tokens": step * window.tokens_per_step,
                "elapsed_s": time.perf_counter() - started,
            }
            with window.paused(trainer.env):
                if step % cfg.eval_every == 0 or last:
                    record["val_loss"] = trainer.evaluate(max_windows=None if last else cfg.eval_windows)
                trainer.metrics.append(record)
                report(record)
        if step % cfg.checkpoint_every == 0 or last:
            with window.paused(trainer.env):
                checkpoints.save(trainer)
    checkpoints.wait()
    return trainer.metrics[-1] if trainer.metrics else {}
