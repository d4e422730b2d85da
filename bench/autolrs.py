"""Benchmark: AutoLRS from a mis-set learning rate against the grid search it replaces, on a test split.

A user who does not know the right learning rate for a new model, corpus or batch size either guesses
or pays for a grid search. Side by side, on nanoGPT's CPU "baby" model with its cosine (the protocol's
`train`: batch, steps, warmup, floor, AdamW settings), every run repeated over the protocol's seeds:
  - `grid`: the cosine at peak `user_lr` x each of `grid_factors`; the factor with the lowest mean
    validation loss over seeds is the grid's choice. `grid_total_steps` is what one search costs (every
    grid point once);
  - `misset`: the cosine at `user_lr` x each of `misset_factors` (a wrong guess; these are grid points);
  - `autolrs_from_misset`: AutoLRS given that wrong guess as its configured learning rate (its range,
    warmup peak and final decay follow from it; the protocol's `autolrs` sets any other option), with
    `total_steps` = training steps + trial steps;
  - `published_default`: the cosine at `user_lr` (nanoGPT's published schedule), and AutoLRS's
    `speedup_vs_default`: the default's steps over AutoLRS's steps (trials counted) to reach its loss.

The corpus file's last `test_fraction` is cut off as the test text; the rest is the project's corpus,
whose own last 10% is validation. Every choice (trial scores, the grid's winner) reads validation or
training loss only. Every figure is a test loss with a hierarchical-bootstrap interval (seeds, then
test windows: `asymptote.stats`). Goals (issue 40): (a) from each wrong guess AutoLRS ends inside the
grid's interval or within `goal_margin_nats` of its estimate, at most `goal_step_share` of
`grid_total_steps`; (b) it beats the mis-set cosine it started from, interval above 0.

Runs are independent processes (`--workers`, one torch thread each); each run's figures are kept in
the store, so a stopped bench resumes where it was. Progress on stderr; one JSON line last on stdout.

    nice -n 10 python bench/autolrs.py --data ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import emit, load_protocol, parser, protocol_fields

from asymptote import stats
from asymptote.autolrs import AutoLRS, LoopIO, drive, search_range
from asymptote.autolrs_config import AutoLRSOptions
from asymptote.checkpoint import unwrap
from asymptote.config import DataConfig, ModelConfig, StoreConfig, TrainConfig
from asymptote.data import ByteTokenizer, eval_windows, read_source, windows_to_batch
from asymptote.dist import DistEnv
from asymptote.job import build_trainer, make_job
from asymptote.schedules import cosine
from asymptote.shards import prepare_dataset
from asymptote.store import Store

RUNS = "bench-autolrs"  # folder of the store where each run's figures are kept


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cut_test(source: str, fraction: float, folder: Path) -> tuple[str, Path]:
    """(path of the corpus without its last `fraction`, path of that last part's tokens as .npy)."""
    blob = read_source(source)
    cut = int(len(blob) * (1 - fraction))
    corpus, test = folder / "corpus.txt", folder / "test.npy"
    corpus.write_bytes(blob[:cut])
    np.save(test, ByteTokenizer().encode(blob[cut:]))
    return str(corpus), test


# ----------------------------------------------------------------------------- one run (a worker)


def run_key(kind: str, factor: float, seed: int) -> str:
    return f"{kind}-x{factor:.4g}-seed{seed}"


def one_run(kind: str, factor: float, seed: int, ctx: dict[str, Any]) -> dict[str, Any]:
    """Train one schedule in this process; its figures (kept as JSON in the store, reused if there)."""
    kept = Path(ctx["store"]) / RUNS / f"{run_key(kind, factor, seed)}.json"
    if kept.exists():
        return json.loads(kept.read_text())
    torch.set_num_threads(ctx["threads"])
    started = time.time()
    out = (cosine_run if kind == "cosine" else autolrs_run)(factor, seed, ctx)
    out |= {"kind": kind, "factor": factor, "seed": seed, "wall_s": round(time.time() - started, 1)}
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(out))
    return out


def _trainer(lr: float, seed: int, ctx: dict[str, Any]):
    t = ctx["train"]
    train = TrainConfig(
        lr=lr,
        min_lr_ratio=t["floor"],
        warmup_steps=t["warmup"],
        max_steps=t["steps"],
        batch_size=t["batch_size"],
        beta2=t["beta2"],
        weight_decay=t["weight_decay"],
        grad_clip=t["grad_clip"],
        train_seed=seed,
        data_seed=seed,
    )
    store = Store(ctx["store"])
    job = make_job(
        name="autolrs-bench",
        model=ModelConfig(preset=ctx["model"]),
        data=DataConfig(source=ctx["corpus"]),
        train=train,
        data_artifact=ctx["data_rel"],
        store=StoreConfig(uri=store.uri()),
    )
    trainer, _, info = build_trainer(job, store, DistEnv())
    return trainer, info


def test_windows(trainer, ctx: dict[str, Any]) -> np.ndarray:
    """Mean loss of every non-overlapping window of the test text (all of them)."""
    tokens, block = np.load(ctx["test"]), ctx["block"]
    model = unwrap(trainer.model)
    model.eval()
    starts, out = eval_windows(len(tokens), block, None), []
    with torch.no_grad():
        for i in range(0, len(starts), 64):
            x, y = windows_to_batch(tokens, starts[i : i + 64], block)
            per_token = torch.nn.functional.cross_entropy(
                model(x).flatten(0, 1), y.flatten(), reduction="none"
            )
            out.append(per_token.view(y.shape).mean(1))
    model.train()
    return torch.cat(out).double().numpy()


def cosine_run(factor: float, seed: int, ctx: dict[str, Any]) -> dict[str, Any]:
    t, lr = ctx["train"], ctx["user_lr"] * factor
    trainer, _ = _trainer(lr, seed, ctx)
    at = cosine(lr, t["steps"], t["warmup"], t["floor"])
    while trainer.step < t["steps"]:
        trainer.train_step(at(trainer.step))
    val, windows = trainer.evaluate(), test_windows(trainer, ctx)
    log(f"cosine x{factor:.3g} (peak {lr:.3g}) seed {seed}: val {val:.4f} test {windows.mean():.4f}")
    return {"lr": lr, "val": val, "test_windows": windows.tolist(), "total_steps": t["steps"]}


def autolrs_run(factor: float, seed: int, ctx: dict[str, Any]) -> dict[str, Any]:
    t, lr = ctx["train"], ctx["user_lr"] * factor
    trainer, info = _trainer(lr, seed, ctx)
    options = AutoLRSOptions(
        **{"warmup_steps": t["warmup"], "val_windows": ctx["val_windows"], "seed": seed} | ctx["autolrs"]
    )
    tokens = t["steps"] * t["batch_size"] * ctx["block"]
    ctl = AutoLRS.start(options, search_range(options, lr, info["non_embedding_params"], tokens), lr)
    curve: list[tuple[int, float, int]] = []  # (step, test loss, trial steps spent so far)

    def report(record: dict[str, Any]) -> None:
        if "val_loss" in record:
            curve.append(
                (record["step"], float(test_windows(trainer, ctx).mean()), ctl.state.trial_steps_spent)
            )

    io = LoopIO(
        report=report,
        eval_every=ctx["eval_every"],
        eval_windows=1,
        val_windows=ctx["val_windows"],
        log_every=10**9,
    )
    state = drive(ctl, trainer, t["steps"], io)
    windows = test_windows(trainer, ctx)
    stages = [{"start": s.start_step, "lr": s.lr, "validation": s.validation} for s in state.stages]
    log(
        f"AutoLRS from x{factor:.3g} (lr {lr:.3g}) seed {seed}: test {windows.mean():.4f} after "
        f"{t['steps']} + {state.trial_steps_spent} trial steps; range {state.min_lr:.3g}..{state.max_lr:.3g}"
    )
    return {
        "lr": lr,
        "range": [state.min_lr, state.max_lr],
        "test_windows": windows.tolist(),
        "trial_steps": state.trial_steps_spent,
        "total_steps": t["steps"] + state.trial_steps_spent,
        "stages": stages,
        "curve": curve,
    }


# ----------------------------------------------------------------------------- analysis


class Figures:
    """Test-loss figures over seeds with the hierarchical bootstrap; one shared window reweighting."""

    def __init__(self, runs: dict[tuple[str, float], list[dict]], analysis: dict[str, Any]):
        self.arms = {k: [np.asarray(r["test_windows"]) for r in rs] for k, rs in runs.items()}
        self.draws = stats.resample(
            {f"{k}x{f}": a for (k, f), a in self.arms.items()}, n_boot=analysis["n_boot"], seed=0
        )
        self.point = stats.point({f"{k}x{f}": a for (k, f), a in self.arms.items()})
        self.level = analysis["level"]

    def loss(self, kind: str, factor: float) -> dict[str, Any]:
        name = f"{kind}x{factor}"
        out = stats.figure(self.point[name], self.draws[name], null=0.0, level=self.level)
        out.pop("p_direction", None)  # a loss is not a comparison
        return out | {"resampled": stats.resampled({name: self.arms[(kind, factor)]})}

    def gain(self, worse: tuple[str, float], better: tuple[str, float]) -> dict[str, Any]:
        """Loss of `worse` minus loss of `better` (positive: `better` wins)."""
        a, b = f"{worse[0]}x{worse[1]}", f"{better[0]}x{better[1]}"
        return stats.figure(
            self.point[a] - self.point[b], self.draws[a] - self.draws[b], null=0.0, level=self.level
        )


def steps_to_reach(run: dict[str, Any], target: float, steps: int) -> int | None:
    """AutoLRS's steps, trials counted, at its first test evaluation at or below `target`."""
    for step, loss, trials in run["curve"]:
        if loss <= target:
            return step + trials
    return steps + run["trial_steps"] if np.mean(run["test_windows"]) <= target else None


def analyse(proto: dict[str, Any], runs: dict[tuple[str, float], list[dict]]) -> dict[str, Any]:
    a, steps = proto["analysis"], proto["train"]["steps"]
    fig = Figures(runs, a)
    mean_val = {f: float(np.mean([r["val"] for r in runs[("cosine", f)]])) for f in proto["grid_factors"]}
    chosen = min(mean_val, key=mean_val.get)
    grid_total = steps * len(proto["grid_factors"])
    grid = fig.loss("cosine", chosen) | {
        "factor": chosen,
        "lr": proto["user_lr"] * chosen,
        "at_grid_edge": chosen in (min(mean_val), max(mean_val)),
        "mean_val_by_factor": {f"{f:.4g}": v for f, v in mean_val.items()},
    }
    default = fig.loss("cosine", 1.0)
    out: dict[str, Any] = {
        "split": "test",
        "seeds": len(proto["seeds"]),
        "grid": grid,
        "grid_total_steps": grid_total,
        "grid_points": {f"x{f:.4g}": fig.loss("cosine", f)["estimate"] for f in proto["grid_factors"]},
        "published_default": default,
        "misset": {},
        "autolrs_from_misset": {},
    }
    for f in proto["misset_factors"]:
        name = f"x{f:.4g}"
        out["misset"][name] = fig.loss("cosine", f) | {"lr": proto["user_lr"] * f}
        mine = runs[("autolrs", f)]
        final = fig.loss("autolrs", f)
        total = [r["total_steps"] for r in mine]
        vs_grid = fig.gain(("autolrs", f), ("cosine", chosen))  # AutoLRS minus grid: positive = worse
        vs_misset = fig.gain(("cosine", f), ("autolrs", f))
        reach = [steps_to_reach(r, default["estimate"], steps) for r in mine]
        out["autolrs_from_misset"][name] = final | {
            "configured_lr": proto["user_lr"] * f,
            "total_steps": float(np.mean(total)),
            "total_steps_by_seed": total,
            "above_grid": vs_grid,
            "gain_over_misset": vs_misset,
            "goal_a": bool(
                (
                    final["estimate"] <= grid["ci"][1]
                    or final["estimate"] <= grid["estimate"] + a["goal_margin_nats"]
                )
                and max(total) <= a["goal_step_share"] * grid_total
            ),
            "goal_b": bool(vs_misset["ci"][0] > 0),
            "speedup_vs_default": [steps / s if s else None for s in reach],
            "stage_lrs_by_seed": [[s["lr"] for s in r["stages"]] for r in mine],
            "range_by_seed": [r["range"] for r in mine],
        }
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = parser(
        "AutoLRS from a mis-set learning rate against a grid search, on a test split.", protocol="autolrs"
    )
    p.add_argument("--workers", type=int, default=2, help="runs trained at once (one torch thread each)")
    args = p.parse_args()
    proto = load_protocol(args.protocol)
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="autolrs-bench-"))
    corpus, test = cut_test(args.data, proto["test_fraction"], tmp)
    store = Store(args.store or str(tmp / "store"))
    ctx = {
        "store": store.uri(),
        "corpus": corpus,
        "test": str(test),
        "data_rel": prepare_dataset(DataConfig(source=corpus), store),
        "block": ModelConfig(preset=proto["model"]).block_size,
        "threads": 1,
    } | {k: proto[k] for k in ("model", "train", "user_lr", "val_windows", "eval_every", "autolrs")}
    seeds = [s + args.seed_offset for s in proto["seeds"]]
    jobs = [("autolrs", f, s) for f in proto["misset_factors"] for s in seeds]  # longest first
    jobs += [("cosine", f, s) for f in proto["grid_factors"] for s in seeds]
    log(f"{args.data}: {len(jobs)} runs on {args.workers} workers; store {store.uri()}")
    runs: dict[tuple[str, float], list[dict]] = {}
    spawn = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
        futures = {pool.submit(one_run, *job, ctx): job for job in jobs}
        for done in cf.as_completed(futures):
            kind, factor, _ = futures[done]
            runs.setdefault((kind, factor), []).append(done.result())
    for rs in runs.values():
        rs.sort(key=lambda r: r["seed"])
    result = {"data": args.data, "model": proto["model"]} | analyse(proto, runs)
    result |= protocol_fields(proto, args.seed_offset) | {
        "wall_s": round(time.time() - started, 1),
        "run_wall_s": round(sum(r["wall_s"] for rs in runs.values() for r in rs), 1),
        "workers": args.workers,
    }
    emit(result, args.save, args.data)


if __name__ == "__main__":
    main()
