"""Live training progress on the driver, fed by Ray workers through a small named actor.

Workers call `hub.update.remote(run, record)` (fire and forget) once per report window; the driver
polls the hub and draws one rich progress bar per run (step, loss, tokens/s, ETA). Where stderr is
not a terminal (CI logs, deployments), it prints a plain line per run every few seconds instead.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from asymptote.infra.remotes import remote


def hub_name() -> str:
    """A fresh name for a progress hub (known before the hub, and Ray, start)."""
    return f"asymptote-progress-{uuid.uuid4().hex[:8]}"


class ProgressHub:
    """The driver's view of every run's latest metrics, as a Ray actor (see `live_progress`)."""

    def __init__(self):
        self.runs: dict[str, dict[str, Any]] = {}

    def update(self, run: str, record: dict[str, Any]) -> None:
        self.runs[run] = {**self.runs.get(run, {}), **record}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.runs


def push(hub_name: str | None, run: str, record: dict[str, Any]) -> None:
    """Called on workers; silently does nothing when no driver is listening."""
    if not hub_name:
        return
    import ray

    try:
        ray.get_actor(hub_name).update.remote(run, record)
    except ValueError:
        pass


def _describe(rec: dict[str, Any]) -> str:
    parts = [f"loss {rec['train_loss']:.3f}" if rec.get("train_loss") is not None else ""]
    if rec.get("val_loss") is not None:
        parts.append(f"val {rec['val_loss']:.3f}")
    if rec.get("tok_per_s"):
        parts.append(f"{rec['tok_per_s'] / 1e3:.1f}k tok/s")
    return "  ".join(p for p in parts if p)


PLAIN_WIDTH = 80
"""Plain lines fit a log viewer's 80 columns: a long run label is shortened in its middle, not wrapped."""


def plain_line(label: str, tail: str, width: int = PLAIN_WIDTH) -> str:
    """`label: tail` in at most `width` columns; the label gives way, keeping its start and its end."""
    room = max(width - len(tail) - 2, 12)
    if len(label) > room:
        keep = room - 1
        label = label[: keep - keep // 2] + "~" + label[len(label) - keep // 2 :]
    return f"{label}: {tail}"


class _Display:
    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.printed: dict[str, tuple[float, Any]] = {}  # run -> (time, step) of its last plain line
        self.first: dict[str, tuple[float, int]] = {}  # run -> (time, step) when first seen: the ETA's rate

    def _eta(self, run: str, rec: dict[str, Any]) -> str:
        step, total = rec.get("step") or 0, rec.get("total_steps")
        t0, s0 = self.first.setdefault(run, (time.time(), step))
        if not total or step <= s0 or step >= total:
            return ""
        left = (total - step) * (time.time() - t0) / (step - s0)
        return f"  ETA {int(left // 60)}:{int(left % 60):02d}"

    @property
    def seen(self) -> bool:
        """Whether any run has reported yet."""
        return bool(self.tasks or self.printed)

    def draw(self, runs: dict[str, dict[str, Any]]) -> None:
        for run, rec in runs.items():
            label = rec.get("label", run)
            if self.live:
                if run not in self.tasks:
                    self.tasks[run] = self.progress.add_task(label, total=rec.get("total_steps"), stats="")
                self.progress.update(self.tasks[run], completed=rec.get("step", 0), stats=_describe(rec))
            else:
                eta = self._eta(run, rec)
                when, step = self.printed.get(run, (0.0, None))
                due = time.time() - when > 10 or rec.get("step") == rec.get("total_steps")
                if due and step != rec.get("step"):
                    tail = f"step {rec.get('step')}/{rec.get('total_steps')}  {_describe(rec)}{eta}"
                    self.console.print(plain_line(label, tail), soft_wrap=True, highlight=False)
                    self.printed[run] = (time.time(), rec.get("step"))


def _draw_when_ready(display: "_Display", snapshot, timeout: float) -> bool:
    """Draw the hub's snapshot if it answers within timeout; whether it did. Never raises: the
    display must never break a run (nor mask its error while Ray shuts down)."""
    import ray

    try:
        if not ray.wait([snapshot], timeout=timeout)[0]:
            return False
        display.draw(ray.get(snapshot))
    except Exception:
        pass
    return True


@contextmanager
def live_progress(
    console: Console | None = None, interval: float = 0.5, name: str | None = None
) -> Iterator[str]:
    """Start a hub, draw until the block ends; yields the hub's actor name for TrainJob.progress_hub."""
    import ray

    name = name or hub_name()
    hub = remote(ProgressHub, num_cpus=0).options(name=name).remote()
    display = _Display(console or Console(stderr=True))
    stop = threading.Event()

    def poll():
        # Never block on the hub: its worker process may still be starting (a fully cached flow ends
        # before it does, and must not wait for it).
        pending = None
        while not stop.wait(interval):
            try:
                pending = pending or hub.snapshot.remote()
            except Exception:
                continue
            if _draw_when_ready(display, pending, timeout=0):
                pending = None

    thread = threading.Thread(target=poll, daemon=True)
    if display.live:
        display.progress.start()
    thread.start()
    try:
        yield name
    finally:
        stop.set()
        thread.join(timeout=5)
        try:  # the last lines; skipped if the hub never started (nothing ran)
            _draw_when_ready(display, hub.snapshot.remote(), timeout=2.0 if display.seen else 0.2)
            ray.kill(hub)
        except Exception:
            pass
        if display.live:
            display.progress.stop()
