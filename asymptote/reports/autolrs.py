"""AutoLRS reports: the schedule a run found as a replayable document and a plot, and the two flows'
report sections and terminal summaries.

`schedule_document` turns a run's AutoLRS trace into the JSON that `train.schedule=replay` plays back
(key "lrs": one learning rate per step) plus what explains it: per-step losses, validation points,
every stage with the LRs it tried, their forecasts and the one it chose. `plot_schedule` draws LR and
loss over steps with each stage's tried LRs. Pure: no Ray, no Prefect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asymptote.autolrs_config import (
    PLOT,
    SCHEDULE,
    AutoLRSFlowConfig,
    AutoLRSResult,
    AutoLRSSearchConfig,
    AutoLRSSearchResult,
    ScheduleRef,
)
from asymptote.refs import RunRef
from asymptote.reports import Report, md_table, shift_headings
from asymptote.store import Store


def _stage_row(stage: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": stage["index"],
        "start_step": stage["start_step"],
        "steps": stage["stage_steps"],
        "trial_steps": stage["trial_steps"],
        "scored_on": "validation" if stage["validation"] else "train",
        "lr": stage["lr"],
        "end_lr": stage.get("end_lr"),
        "search_steps": sum(t.get("ran", 0) for t in stage["trials"]),
        "trials": [{"lr": t["lr"], "forecast": t["score"]} for t in stage["trials"]],
    }


def schedule_document(trace: dict[str, Any], run_uri: str) -> dict[str, Any]:
    """The replayable schedule: {"lrs": [...per step], "losses", "val", "stages", "chosen_lrs", ...}."""
    state = trace["state"]
    stages = [_stage_row(s) for s in state["stages"]]
    val = [[m["step"], m["val_loss"]] for m in trace["metrics"] if m.get("val_loss") is not None]
    return {
        "lrs": state["lrs"],
        "losses": state["losses"],
        "val": val,
        "stages": stages,
        "chosen_lrs": [s["lr"] for s in stages if s["end_lr"] is None],
        "decay": next(
            (
                {"start_step": s["start_step"], "from_lr": s["lr"], "to_lr": s["end_lr"]}
                for s in stages
                if s["end_lr"] is not None
            ),
            None,
        ),
        "search_range": [state["min_lr"], state["max_lr"]],
        "total_steps": trace["total_steps"],
        "trial_steps_spent": state["trial_steps_spent"],
        "final_val_loss": val[-1][1] if val else None,
        "run": run_uri,
        "options": trace["options"],
    }


def _smooth(values: list[float], window: int = 20) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")


def plot_schedule(doc: dict[str, Any], path: str | Path, title: str = "AutoLRS") -> None:
    """Top: LR per step (log scale) and every trial's LR at its stage start. Bottom: train and val loss."""
    import matplotlib  # third-party and slow to import: only the step that draws the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), dpi=110, sharex=True)
    steps = np.arange(len(doc["lrs"]))
    top.plot(steps, doc["lrs"], lw=1.4, label="schedule")
    for s in doc["stages"]:
        tried = [t["lr"] for t in s["trials"]]
        top.scatter(
            [s["start_step"]] * len(tried),
            tried,
            marker="x",
            s=18,
            color="grey",
            label="tried" if s["index"] == 0 and tried else None,
        )
        top.axvline(s["start_step"], color="grey", lw=0.5, alpha=0.5)
    top.set(yscale="log", ylabel="learning rate", title=title)
    window = min(20, max(1, len(doc["losses"]) // 10))
    smooth = _smooth(doc["losses"], window)
    bottom.plot(np.arange(len(smooth)) + window - 1, smooth, lw=1.2, label=f"train (mean of {window})")
    if doc["val"]:
        bottom.plot(*zip(*doc["val"], strict=False), "o-", ms=3, label="validation")
    bottom.set(xlabel="step (trial steps not shown)", ylabel="loss (nats/token)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def autolrs_markdown(
    config: AutoLRSFlowConfig, run: RunRef, schedule: ScheduleRef, store: Store, plot: str = PLOT
) -> str:
    doc = store.read_json(schedule.rel, SCHEDULE)
    rows = [
        {
            "stage": s["index"],
            "start": s["start_step"],
            "steps": s["steps"],
            "trial steps": s["trial_steps"],
            "scored on": s["scored_on"],
            "tried": len(s["trials"]),
            "chosen lr": f"{s['lr']:.3g}"
            + (f" to {s['end_lr']:.3g} (final cosine decay)" if s.get("end_lr") is not None else ""),
            "best forecast": min((t["forecast"] for t in s["trials"]), default=float("nan")),
        }
        for s in doc["stages"]
    ]
    lo, hi = doc["search_range"]
    overhead = schedule.trial_steps / max(1, schedule.steps)
    return (
        f"# AutoLRS: {config.name}\n\n"
        f"{config.model.preset or 'custom'} model, {schedule.steps} steps at the found schedule plus "
        f"{schedule.trial_steps} trial steps ({overhead:.0%} search overhead); final validation loss "
        f"**{run.val_loss:.4f}**. LRs searched in [{lo:.3g}, {hi:.3g}] (train.lr {config.train.lr:.3g}) "
        f"with `{config.autolrs.backend}`, "
        f"{config.autolrs.trials} trials per stage.\n\n{md_table(rows)}\n\n"
        f"- run: `{run.uri}`\n- schedule: `{schedule.uri}` (replay it: `--set train.schedule=replay "
        f"--set train.schedule_file={schedule.uri}`)\n\n![AutoLRS schedule]({plot})\n"
    )


def report(
    config: AutoLRSFlowConfig, result: AutoLRSResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    plot = f"{prefix}{PLOT}"
    markdown = autolrs_markdown(config, result.run, result.schedule, store, plot=plot)
    if "test_loss" in result.metrics:
        bpb = result.metrics.get("test_bpb")
        markdown += (
            f"\nOn the test split, which no choice read: loss **{result.metrics['test_loss']:.4f}**"
            + (f" nats/token, {bpb:.4f} bits per byte.\n" if bpb is not None else " nats/token.\n")
        )
    files = {plot: store.read(result.schedule.rel, PLOT)}
    return Report(shift_headings(markdown, level - 1), files, figures(result))


def summary(result: AutoLRSResult) -> tuple[dict, str]:
    f = figures(result)
    lrs = ", ".join(f"{x:.3g}" for x in f["chosen_lrs"])
    test = result.metrics.get("test_loss")
    line = (
        (f"test_loss {test:.4f}; " if test is not None else "")
        + f"val_loss {result.val_loss:.4f} after {f['steps']} steps + {f['trial_steps']} trial steps; chosen LRs "
        f"{lrs}; schedule {f['schedule_uri']} (replay: --set train.schedule=replay --set train.schedule_file=URI)"
    )
    return f, line


def figures(res: AutoLRSResult) -> dict:
    s = res.schedule
    return {
        "val_loss": res.val_loss,
        "test_loss": res.metrics.get("test_loss"),
        "steps": s.steps,
        "trial_steps": s.trial_steps,
        "search_overhead": s.trial_steps / max(1, s.steps),
        "chosen_lrs": s.chosen_lrs,
        "schedule_uri": s.uri,
        "run_uri": res.run.uri,
    }


def table(result: AutoLRSResult) -> list[dict]:
    """The headline rows: the final test and validation loss, the steps spent, and each stage's chosen LR."""
    f = figures(result)
    keys = ("test_loss", "val_loss", "steps", "trial_steps", "search_overhead")
    rows = [{"figure": k, "value": f[k]} for k in keys if f[k] is not None]
    return rows + [{"figure": f"stage {i} lr", "value": lr} for i, lr in enumerate(f["chosen_lrs"], 1)]


def search_report(
    config: AutoLRSSearchConfig, result: AutoLRSSearchResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    """The weight-decay search: one row per trial, best first."""
    rows = sorted(result.results, key=lambda r: r["loss"])
    markdown = (
        f"# AutoLRS weight-decay search: {config.name}\n\n"
        f"{len(rows)} trials ({config.sampler} sampler) over weight decay in "
        f"[{config.weight_decay[0]:.3g}, {config.weight_decay[1]:.3g}], each trained with AutoLRS.\n\n"
        f"{md_table(rows, ['weight_decay', 'loss', 'run'])}\n\n- search: `{store.uri(result.rel)}`\n"
    )
    return Report(shift_headings(markdown, level - 1), {}, search_figures(result))


def search_summary(result: AutoLRSSearchResult) -> tuple[dict, str]:
    f = search_figures(result)
    line = (
        f"{f['trials']} trials; best weight_decay {f['best_weight_decay']:.3g} "
        f"(val_loss {f['best_loss']:.4f}, run {f['best_run']}); results in {result.rel}"
    )
    return f, line


def search_table(result: AutoLRSSearchResult) -> list[dict]:
    """The headline rows: every trial's weight decay and final validation loss, best first."""
    rows = [
        {"weight_decay": r["weight_decay"], "val_loss": r["loss"], "run": r["run"]} for r in result.results
    ]
    return sorted(rows, key=lambda r: r["val_loss"])


def search_figures(res: AutoLRSSearchResult) -> dict:
    return {
        "trials": len(res.results),
        "best_weight_decay": res.best["weight_decay"],
        "best_loss": res.best["loss"],
        "best_run": res.best["run"],
    }
