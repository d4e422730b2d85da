"""Benchmark: AutoLRS against nanoGPT's published schedule and a grid-tuned one, losses on a test split.

Three trainings side by side on the same model (`baby`, nanoGPT's CPU "baby GPT"), batch (12 x 64),
data order, optimiser (AdamW, beta2 0.99, weight decay 0.1, clip 1) and evaluation:
  1. the published default: nanoGPT's schedule for that model, peak LR 1e-3, 100 warmup steps, cosine
     to 1e-4 over 2,000 steps;
  2. the same schedule with its peak LR tuned over a factor-2 grid around the default (extended past an
     edge that holds the best), the winner chosen on validation; the grid's cost is reported;
  3. AutoLRS with its defaults (k=10, tau'=10, tau=100, tau_max=800: the reference's ratios at 1/10 the
     length), 100 warmup steps, its LR range from its rule (the Step Law prior, [lr/10, 10 lr]).
The corpus file's last `--test-fraction` is cut off as a test text (written to a temp folder); the rest
is the project's corpus, whose own last 10% is validation. Every choice (trial scores, the grid winner)
sees validation or training loss only; every reported loss is on the test text.

With `--goal-speedup S` (1.2 by default) the tuned grid's cosines are also trained fitted to 1/S of
the steps, no trials: the loss a tuned schedule reaches in the budget the speed-up goal leaves, which
says how far below a tuned cosine at equal steps AutoLRS's schedule must run to meet it
(`--only-goal`: the baselines and that, without AutoLRS).

Reported: the AutoLRS steps, trial steps counted, needed to reach each baseline's final test loss
(test loss every `--eval-every` steps), speedups = baseline steps / those, and the forecast's error:
for every checked trial the forecast at tau against the loss reached at tau (the chosen LR's stage
gives it; `--checks` other trials per stage are trained to tau from the stage's snapshot). The test
losses carry +-1 standard error over test windows (sampling of the test text only, not of training).

Runs in this process (no Ray, no Prefect). Progress on stderr; one JSON line last on stdout.

    nice -n 10 python bench/autolrs.py --data ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import emit, parser

from asymptote.autolrs import AutoLRS, LoopIO, drive, search_range
from asymptote.autolrs_config import AutoLRSOptions
from asymptote.checkpoint import unwrap
from asymptote.config import DataConfig, ModelConfig, StoreConfig, TrainConfig
from asymptote.data import ByteTokenizer, eval_windows, read_source, windows_to_batch
from asymptote.dist import DistEnv
from asymptote.forecast import forecast
from asymptote.job import build_trainer, make_job
from asymptote.schedules import cosine
from asymptote.shards import prepare_dataset
from asymptote.store import Store

DEFAULT = dict(lr=1e-3, warmup=100, steps=2000, floor=0.1)  # nanoGPT shakespeare_char on CPU


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data and evaluation


def cut_test(source: str, fraction: float, folder: Path) -> tuple[str, np.ndarray]:
    """(path of the corpus without its last `fraction`, the tokens of that last part)."""
    blob = read_source(source)
    cut = int(len(blob) * (1 - fraction))
    path = folder / "corpus.txt"
    path.write_bytes(blob[:cut])
    return str(path), ByteTokenizer().encode(blob[cut:])


@torch.no_grad()
def window_losses(model: torch.nn.Module, tokens: np.ndarray, block: int, batch: int = 64) -> np.ndarray:
    """Mean loss of every non-overlapping window of `tokens` (all of them)."""
    model = unwrap(model)
    model.eval()
    starts, out = eval_windows(len(tokens), block, None), []
    for i in range(0, len(starts), batch):
        x, y = windows_to_batch(tokens, starts[i : i + batch], block)
        logits = model(x)
        per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        out.append(per_token.view(y.shape).mean(1))
    return torch.cat(out).double().numpy()


def test_loss(model, tokens, block) -> tuple[float, float]:
    """(mean test loss, its standard error over windows)."""
    w = window_losses(model, tokens, block)
    return float(w.mean()), float(w.std(ddof=1) / math.sqrt(len(w)))


# ----------------------------------------------------------------------------- the runs


class Bench:
    def __init__(self, store: Store, data: DataConfig, test_tokens: np.ndarray, threads: int):
        self.store, self.data, self.test = store, data, test_tokens
        self.data_rel = prepare_dataset(data, store)
        self.model = ModelConfig(preset="baby")
        self.threads = threads

    def trainer(self, lr: float = DEFAULT["lr"], steps: int | None = None):
        train = TrainConfig(
            lr=lr,
            min_lr_ratio=DEFAULT["floor"],
            warmup_steps=DEFAULT["warmup"],
            max_steps=steps or DEFAULT["steps"],
            batch_size=12,
            beta2=0.99,
            weight_decay=0.1,
            grad_clip=1.0,
        )
        job = make_job(
            name="autolrs-bench",
            model=self.model,
            data=self.data,
            train=train,
            data_artifact=self.data_rel,
            store=StoreConfig(uri=self.store.uri()),
        )
        torch.set_num_threads(self.threads)
        trainer, _, info = build_trainer(job, self.store, DistEnv())
        return trainer, info

    def cosine_run(self, lr: float, steps: int | None = None) -> dict[str, Any]:
        """nanoGPT's schedule at peak `lr` (its cosine fitted to `steps`, default the baseline's):
        final validation (whole split) and test loss."""
        steps = steps or DEFAULT["steps"]
        trainer, _ = self.trainer(lr, steps)
        at = cosine(lr, steps, DEFAULT["warmup"], DEFAULT["floor"])
        started = time.time()
        while trainer.step < steps:
            trainer.train_step(at(trainer.step))
        val = trainer.evaluate()
        test, se = test_loss(trainer.model, self.test, self.model.block_size)
        log(
            f"cosine peak {lr:.3g} over {steps} steps: val {val:.4f} test {test:.4f} +- {se:.4f} "
            f"({time.time() - started:.0f} s)"
        )
        return {"lr": lr, "val": val, "test": test, "test_se": se, "steps": steps}


def tune_grid(bench: Bench, default: dict[str, Any], factors=(0.5, 2, 4, 8)) -> dict[float, dict]:
    """Peak LRs default x factors (the default run is a grid point); one more factor 2 past an edge
    that holds the best, twice at most. The winner is the lowest validation loss."""
    runs = {default["lr"]: default} | {
        lr: bench.cosine_run(lr) for lr in (default["lr"] * f for f in factors)
    }
    return past_edges(runs, bench.cosine_run)


def past_edges(runs: dict[float, dict], run) -> dict[float, dict]:
    """The grid `runs` (peak LR -> run), extended by one factor 2 past an edge that holds the lowest
    validation loss, twice at most; `run(lr)` trains one more point."""
    for _ in range(2):
        best = min(runs, key=lambda lr: runs[lr]["val"])
        if best not in (min(runs), max(runs)):
            break
        nxt = best / 2 if best == min(runs) else best * 2
        runs[nxt] = run(nxt)
    return dict(sorted(runs.items()))


def goal_budget(bench: Bench, lrs: list[float], speedup: float) -> dict[str, Any]:
    """What the speed-up goal asks, tried without AutoLRS: the same schedule with its cosine fitted to
    steps / speedup (the most a schedule may use, trials included, to reach the default's loss that
    much faster), its peak chosen on validation over the tuned grid's LRs (extended past an edge).
    If even this, with no trial steps at all, ends above the default's final test loss, a schedule
    search that spends steps on trials has to beat a tuned cosine at equal steps by the difference."""
    steps = math.ceil(DEFAULT["steps"] / speedup)

    def run(lr: float) -> dict[str, Any]:
        return bench.cosine_run(lr, steps)

    runs = past_edges({lr: run(lr) for lr in lrs}, run)
    best = winner(runs)
    return {
        "goal_speedup": speedup,
        "goal_budget_steps": steps,
        "goal_budget_grid": grid_table(runs),
        "goal_budget_tuned_lr": best["lr"],
        "goal_budget_tuned_final_loss": best["test"],
        "goal_budget_tuned_final_loss_se": best["test_se"],
        "goal_budget_grid_steps": steps * len(runs),
    }


class Snapshots:
    """The trainer, keeping a copy of every snapshot AutoLRS takes (a stage start) for the checks."""

    def __init__(self, trainer):
        self.trainer, self.kept = trainer, {}

    def __getattr__(self, name):
        return getattr(self.trainer, name)

    def __setattr__(self, name, value):
        if name in ("trainer", "kept"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.trainer, name, value)

    def snapshot(self):
        snap = self.trainer.snapshot()
        self.kept[snap["step"]] = snap
        return snap


def run_autolrs(bench: Bench, eval_every: int, val_windows: int) -> dict[str, Any]:
    trainer, info = bench.trainer()
    total, tokens = DEFAULT["steps"], DEFAULT["steps"] * 12 * bench.model.block_size
    options = AutoLRSOptions(warmup_steps=DEFAULT["warmup"], val_windows=val_windows)
    ctl = AutoLRS.start(options, search_range(options, info["non_embedding_params"], tokens))
    log(f"AutoLRS: range {ctl.state.min_lr:.3g}..{ctl.state.max_lr:.3g}, {options}")
    curve: list[tuple[int, float]] = [(0, test_loss(trainer.model, bench.test, bench.model.block_size)[0])]

    def report(record: dict[str, Any]) -> None:
        if "trial_score" in record:
            t = ctl.stage.trials[-1]
            log(
                f"  stage {record['stage']} trial {record['trial']} lr {t.lr:.3g} "
                f"-> {t.score:.4f} ({t.scored_by})"
            )
        elif "val_loss" in record:
            curve.append((record["step"], test_loss(trainer.model, bench.test, bench.model.block_size)[0]))
            log(f"AutoLRS step {record['step']} lr {record['lr']:.3g} test {curve[-1][1]:.4f}")

    wrapped = Snapshots(trainer)
    io = LoopIO(
        report=report, eval_every=eval_every, eval_windows=1, val_windows=val_windows, log_every=10**9
    )
    started = time.time()
    state = drive(ctl, wrapped, total, io)
    final_val = trainer.evaluate(max_windows=val_windows)
    test, se = test_loss(trainer.model, bench.test, bench.model.block_size)
    log(f"AutoLRS: test {test:.4f} +- {se:.4f} after {total} + {state.trial_steps_spent} trial steps")
    return {
        "state": state,
        "curve": curve,
        "test": test,
        "test_se": se,
        "final_val": final_val,
        "snapshots": wrapped.kept,
        "trainer": trainer,
        "wall_s": time.time() - started,
    }


# ----------------------------------------------------------------------------- forecast quality


def reached_at_tau(stage, losses: list[float], val_at_end: float | None) -> float | None:
    """The loss a stage's run reached at its horizon, on the axis its trials were scored on: the mean of
    its last 10 training losses (what the controller itself calls the recent level), or validation."""
    if stage.validation:
        return val_at_end
    return float(np.mean(losses[-10:])) if len(losses) >= 10 else None


def chosen_checks(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Forecast vs reached for each stage's chosen trial, from the stage's own run."""
    stages, out = run["state"].stages, []
    for i, stage in enumerate(stages):
        chosen = next((t for t in stage.trials if t.lr == stage.lr), None)
        if chosen is None or chosen.forecast is None:
            continue
        nxt = stages[i + 1] if i + 1 < len(stages) else None
        val_end = (nxt.start_loss if nxt and nxt.validation else None) if nxt else run["final_val"]
        losses = run["state"].losses[stage.start_step : stage.end_step]
        out.append(check_row(stage, chosen, reached_at_tau(stage, losses, val_end), "chosen"))
    return out


def check_row(stage, trial, reached: float | None, kind: str) -> dict[str, Any]:
    return {
        "stage": stage.index,
        "kind": kind,
        "lr": trial.lr,
        "scored_on": "validation" if stage.validation else "train",
        "forecast": trial.forecast,
        "forecast_reference_denoiser": forecast(
            trial.steps, trial.losses, stage.stage_steps, stage.validation, "reference"
        ),
        "reached": reached,
    }


def trained_checks(run: dict[str, Any], per_stage: int, val_windows: int) -> list[dict[str, Any]]:
    """Train `per_stage` other forecast-scored trials of every stage to tau from the stage's snapshot."""
    trainer, out = run["trainer"], []
    for stage in run["state"].stages:
        others = [t for t in stage.trials if t.lr != stage.lr and t.forecast is not None]
        if stage.start_step not in run["snapshots"]:
            continue
        for trial in random.Random(stage.index).sample(others, min(per_stage, len(others))):
            trainer.restore(run["snapshots"][stage.start_step])
            losses = [float(trainer.train_step(trial.lr)) for _ in range(stage.stage_steps)]
            val = trainer.evaluate(max_windows=val_windows) if stage.validation else None
            out.append(check_row(stage, trial, reached_at_tau(stage, losses, val), "trained"))
            log(
                f"  check stage {stage.index} lr {trial.lr:.3g}: "
                f"forecast {trial.forecast:.4f} reached {out[-1]['reached']}"
            )
    return out


def mae(rows: list[dict[str, Any]], key: str) -> float | None:
    errs = [abs(r[key] - r["reached"]) for r in rows if r["reached"] is not None and r[key] is not None]
    return float(np.mean(errs)) if errs else None


# ----------------------------------------------------------------------------- figures


def cost_to_reach(run: dict[str, Any], target: float) -> dict[str, int] | None:
    """Steps, and steps + trial steps, at the first test evaluation at or below `target`. A stage's
    trials all run before its first step, so a point inside stage i has cost the trials of 0..i."""
    step = next((s for s, loss in run["curve"] if loss <= target), None)
    if step is None and run["test"] <= target:
        step = DEFAULT["steps"]
    if step is None:
        return None
    trials = sum(sum(t.ran for t in s.trials) for s in run["state"].stages if s.start_step < step)
    return {"steps": step, "with_trials": step + trials}


def winner(runs: dict[float, dict]) -> dict[str, Any]:
    """The grid's run with the lowest validation loss (the choice is made on validation)."""
    return min(runs.values(), key=lambda r: r["val"])


def grid_table(runs: dict[float, dict]) -> dict[str, dict[str, float]]:
    return {f"{lr:.4g}": {"val": r["val"], "test": r["test"]} for lr, r in runs.items()}


def baselines(default, grid) -> dict[str, Any]:
    """The published default's and the validation-tuned cosine's figures, on test."""
    tuned = winner(grid)
    return {
        "split": "test",
        "default_final_loss": default["test"],
        "default_final_loss_se": default["test_se"],
        "tuned_final_loss": tuned["test"],
        "tuned_final_loss_se": tuned["test_se"],
        "tuned_lr": tuned["lr"],
        "tuned_grid": grid_table(grid),
        "tuned_grid_steps": sum(r["steps"] for r in grid.values()),
    }


def figures(default, grid, run, checks) -> dict[str, Any]:
    tuned = winner(grid)
    to_default, to_tuned = cost_to_reach(run, default["test"]), cost_to_reach(run, tuned["test"])
    stages = run["state"].stages
    return {
        **baselines(default, grid),
        "autolrs_final_loss": run["test"],
        "autolrs_final_loss_se": run["test_se"],
        "autolrs_steps": DEFAULT["steps"],
        "autolrs_trial_steps": run["state"].trial_steps_spent,
        "autolrs_steps_to_default": to_default,
        "autolrs_steps_to_tuned": to_tuned,
        "speedup_vs_default": DEFAULT["steps"] / to_default["with_trials"] if to_default else None,
        "speedup_vs_tuned": DEFAULT["steps"] / to_tuned["with_trials"] if to_tuned else None,
        "forecast_mae": mae(checks, "forecast"),
        "forecast_mae_reference_denoiser": mae(checks, "forecast_reference_denoiser"),
        "forecast_checks": len([r for r in checks if r["reached"] is not None]),
        "forecast_rows": checks,
        "autolrs_range": [run["state"].min_lr, run["state"].max_lr],
        "autolrs_stages": [
            {
                "start": s.start_step,
                "tau'": s.trial_steps,
                "tau": s.stage_steps,
                "scored_on": "validation" if s.validation else "train",
                "lr": s.lr,
                "tried": sorted(t.lr for t in s.trials),
                "scored_by": [t.scored_by for t in s.trials],
            }
            for s in stages
        ],
        "autolrs_test_curve": run["curve"],
    }


def main() -> None:
    p = parser("AutoLRS vs nanoGPT's published schedule and a grid-tuned one, on a test split.")
    p.add_argument("--test-fraction", type=float, default=0.1, help="last part of the file held out as test")
    p.add_argument("--eval-every", type=int, default=50, help="AutoLRS test evaluation interval (steps)")
    p.add_argument("--val-windows", type=int, default=256, help="validation windows per trial evaluation")
    p.add_argument("--checks", type=int, default=2, help="other trials per stage trained to tau")
    p.add_argument("--grid", default="0.5,2,4,8", help="tuned-grid peak LRs as factors of the default's")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--steps", type=int, default=DEFAULT["steps"], help="baseline steps (smoke runs: fewer)")
    p.add_argument("--warmup", type=int, default=DEFAULT["warmup"], help="warmup steps (smoke runs: fewer)")
    p.add_argument(
        "--goal-speedup",
        type=float,
        default=1.2,
        help="also train the tuned grid's cosines fitted to steps / this (0: skip), to show what the goal asks",
    )
    p.add_argument("--only-goal", action="store_true", help="the baselines and the goal's budget, no AutoLRS")
    args = p.parse_args()
    DEFAULT["steps"], DEFAULT["warmup"] = args.steps, args.warmup
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="autolrs-bench-"))
    corpus, test_tokens = cut_test(args.data, args.test_fraction, tmp)
    store = Store(args.store or str(tmp / "store"))
    bench = Bench(store, DataConfig(source=corpus), test_tokens, args.threads)
    log(f"{args.data}: {len(test_tokens)} test tokens; store {store.uri()}")
    default = bench.cosine_run(DEFAULT["lr"])
    grid = tune_grid(bench, default, [float(f) for f in args.grid.split(",")])
    goal = goal_budget(bench, list(grid), args.goal_speedup) if args.goal_speedup else {}
    result = {"data": args.data, "model": "baby", "batch_size": 12}
    if args.only_goal:
        result |= baselines(default, grid)
    else:
        run = run_autolrs(bench, args.eval_every, args.val_windows)
        checks = chosen_checks(run) + trained_checks(run, args.checks, args.val_windows)
        result |= figures(default, grid, run, checks)
    result |= goal | {"wall_s": round(time.time() - started, 1), "threads": args.threads}
    emit(result, args.save, args.data)


if __name__ == "__main__":
    main()
