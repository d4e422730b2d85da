"""Benchmark: AutoLRS against a tuned warmup + cosine schedule at CPU scale.

Baseline: warmup + cosine to zero over N steps, its peak LR tuned over a factor-2 grid (extended once
past an edge if the best sits on it); its best final validation loss (whole split) is the target.
AutoLRS trains the same model on the same batches (same data seed) for up to `--budget` x N steps,
its LR range from the Step Law prior, validation loss on the whole split every `--eval-every` steps.
Reported: the steps AutoLRS needed to reach the target, without and with its trial steps, and
speedup = N / those steps (the paper's bar: 1.22x to 1.5x, trials counted).

Runs in this process (no Ray, no Prefect), so the wall time is the training's own. Runs are committed
to the store and reused by a rerun on the same store (e.g. to try another AutoLRS range against the
same baseline: --min-lr/--max-lr).
Prints progress on stderr and, last, one JSON line on stdout.

    python bench/autolrs.py --data ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any, Optional

import torch
import typer

from asymptote.config import DataConfig, ModelConfig, StoreConfig, TrainConfig
from asymptote.dist import DistEnv
from asymptote.job import make_job, run_job
from asymptote.shards import prepare_dataset
from asymptote.store import Store
from asymptote.tuning.autolrs_driver import TRACE, trace_rel
from asymptote.tuning.autolrs_report import schedule_document, steps_to_reach

ALL_WINDOWS = 1_000_000  # more windows than any split holds: interval evaluations use the whole split


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def progress(label: str):
    def report(record: dict[str, Any]) -> None:
        if "trial_score" in record:
            log(
                f"{label}: stage {record['stage']} trial {record['trial']} lr {record['trial_lr']:.3g} "
                f"-> forecast {record['trial_score']:.4f}"
            )
        elif "train_loss" in record:
            val = f" val {record['val_loss']:.4f}" if record.get("val_loss") is not None else ""
            speed = f" ({record['tok_per_s'] / 1e3:.1f}k tok/s)" if "tok_per_s" in record else ""
            log(
                f"{label}: step {record['step']}/{record['total_steps']} lr {record['lr']:.3g} "
                f"train {record['train_loss']:.4f}{val}{speed}"
            )

    return report


class Bench:
    def __init__(
        self,
        store: Store,
        data: DataConfig,
        model: ModelConfig,
        steps: int,
        batch: int,
        warmup: int,
        eval_every: int,
    ):
        self.store, self.data, self.model = store, data, model
        self.steps, self.batch, self.warmup, self.eval_every = steps, batch, warmup, eval_every
        self.data_rel = prepare_dataset(data, store)

    def train_config(self, **kw) -> TrainConfig:
        base = dict(
            max_steps=self.steps,
            batch_size=self.batch,
            warmup_steps=self.warmup,
            log_every=250,
            eval_every=self.steps,
            eval_windows=256,
            checkpoint_every=100_000,
        )
        return TrainConfig(**(base | kw))

    def run(self, name: str, train: TrainConfig, driver: dict | None = None) -> dict[str, Any]:
        job = make_job(
            name=name,
            model=self.model,
            data=self.data,
            train=train,
            data_artifact=self.data_rel,
            store=StoreConfig(uri=self.store.uri()),
            driver=driver or {"kind": "schedule"},
        )
        started = time.time()
        summary = run_job(job, DistEnv(), progress(name))
        log(f"{name}: final val {summary['val_loss']:.4f} ({time.time() - started:.0f} s)")
        return {"job": job, "summary": summary}

    def baseline(self, lr: float) -> float:
        return self.run(f"cosine lr={lr:.3g}", self.train_config(lr=lr, schedule="cosine"))["summary"][
            "val_loss"
        ]


def tune_baseline(bench: Bench, grid: list[float]) -> dict[float, float]:
    """Val loss per peak LR; the grid grows by one factor-2 step past an edge that holds the best."""
    losses = {lr: bench.baseline(lr) for lr in grid}
    for _ in range(2):
        best = min(losses, key=losses.get)
        if best not in (min(losses), max(losses)):
            break
        nxt = best / 2 if best == min(losses) else best * 2
        losses[nxt] = bench.baseline(nxt)
    return dict(sorted(losses.items()))


def run_autolrs(bench: Bench, budget: float, options: dict) -> dict[str, Any]:
    total = round(budget * bench.steps)
    train = bench.train_config(max_steps=total, eval_every=bench.eval_every, eval_windows=ALL_WINDOWS)
    out = bench.run("autolrs", train, {"kind": "autolrs", **options})
    trace = bench.store.read_json(trace_rel(out["job"].run_rel), TRACE)
    return schedule_document(trace, bench.store.uri(out["job"].run_rel))


def figures(baseline: dict[float, float], doc: dict[str, Any], steps: int) -> dict[str, Any]:
    target = min(baseline.values())
    reached = steps_to_reach(doc, target)
    at_n = [v for s, v in doc["val"] if s <= steps]
    return {
        "baseline_val_loss": target,
        "baseline_best_lr": min(baseline, key=baseline.get),
        "baseline_steps": steps,
        "baseline_grid": {f"{lr:.4g}": v for lr, v in baseline.items()},
        "autolrs_steps_to_reach": reached[0] if reached else None,
        "autolrs_steps_to_reach_with_search": reached[1] if reached else None,
        "speedup_without_search": steps / reached[0] if reached else None,
        "speedup_with_search": steps / reached[1] if reached else None,
        "autolrs_val_loss_at_baseline_steps": at_n[-1] if at_n else None,
        "autolrs_final_val_loss": doc["final_val_loss"],
        "autolrs_steps": len(doc["lrs"]),
        "autolrs_trial_steps": doc["trial_steps_spent"],
        "autolrs_chosen_lrs": doc["chosen_lrs"],
        "autolrs_search_range": doc["search_range"],
    }


def main(
    data: str = typer.Option(..., "--data", help="Text corpus (file, folder or URI)."),
    preset: str = typer.Option("cpu-0.3m", help="Model preset."),
    steps: int = typer.Option(2000, help="Baseline steps N."),
    batch: int = typer.Option(32, help="Batch size in sequences."),
    warmup: int = typer.Option(50, help="Warmup steps (baseline and AutoLRS)."),
    grid: str = typer.Option("2e-3,4e-3,8e-3,1.6e-2", help="Baseline peak LRs, comma-separated."),
    budget: float = typer.Option(1.5, help="AutoLRS may train up to budget x N steps to reach the target."),
    eval_every: int = typer.Option(100, help="AutoLRS whole-split validation interval (steps)."),
    trials: int = typer.Option(4, help="AutoLRS k."),
    trial_steps: int = typer.Option(20, help="AutoLRS tau'."),
    stage_steps: int = typer.Option(200, help="AutoLRS tau."),
    max_stage_steps: int = typer.Option(1600, help="AutoLRS tau_max."),
    backend: str = typer.Option("bayes_opt", help="bayes_opt, optuna_gp or optuna_tpe."),
    min_lr: Optional[float] = typer.Option(None, help="AutoLRS range low end (default: Step Law prior)."),
    max_lr: Optional[float] = typer.Option(None, help="AutoLRS range high end (default: Step Law prior)."),
    threads: int = typer.Option(2, help="torch threads."),
    store: Optional[str] = typer.Option(None, help="Artifact store (default: a new folder in /tmp)."),
    max_train_tokens: Optional[int] = typer.Option(None, help="Token budget D (default: the whole corpus)."),
):
    torch.set_num_threads(threads)
    started = time.time()
    root = store or tempfile.mkdtemp(prefix="autolrs-bench-", dir="/tmp")
    log(f"store {root}; {preset}, batch {batch}, baseline {steps} steps, grid {grid}")
    bench = Bench(
        Store(root),
        DataConfig(source=data, max_train_tokens=max_train_tokens),
        ModelConfig(preset=preset),
        steps,
        batch,
        warmup,
        eval_every,
    )
    baseline = tune_baseline(bench, [float(x) for x in grid.split(",")])
    log(f"baseline grid: {baseline}")
    options = {
        "trials": trials,
        "trial_steps": trial_steps,
        "stage_steps": stage_steps,
        "max_stage_steps": max_stage_steps,
        "backend": backend,
        "warmup_steps": warmup,
        "min_lr": min_lr,
        "max_lr": max_lr,
    }
    doc = run_autolrs(bench, budget, options)
    result = {
        "data": data,
        "model": preset,
        "batch_size": batch,
        **figures(baseline, doc, steps),
        "wall_s": round(time.time() - started, 1),
        "threads": threads,
        "store": root,
    }
    log(
        f"target {result['baseline_val_loss']:.4f}: AutoLRS reached it at step {result['autolrs_steps_to_reach']} "
        f"({result['autolrs_steps_to_reach_with_search']} with trials)"
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    typer.run(main)
