"""Overhead of asymptote's Ray Train loop against a bare torch loop: same model, threads and batches.

Runs, in one process and one after the other: a bare loop, the project's pretrain flow (Prefect ->
Ray task -> TorchTrainer local mode -> Trainer, with its reporting, checkpoints and progress), and
the bare loop again (its two timings are averaged so that drifting machine load cancels out).

- steady_ratio: tokens/s after warm-up (project / bare), from the project's own step timings of the
  whole loop (reports, checkpoints and the interval evaluation excluded from neither) vs the bare loop.
- step_ratio: the same, from the time spent inside the project's train steps alone (its per-window
  tokens/s), i.e. without reports, checkpoints and interval evaluations: how much of the gap is the
  step itself (the same code as the bare loop's) running beside Ray's and Prefect's services.
- end_to_end_ratio: bare wall time / project wall time for the same budget, start-up included
  (Prefect's API, Ray, data preparation, the final evaluation and artifact commit).
- tracking_steady_ratio: the project's steady tokens/s with MLflow tracking on (to an `mlflow server`
  the bench starts on loopback, SQLite backend) over the same run with tracking off: four runs, off,
  on, on, off, each into a fresh store, so that a drift in machine load cancels in the two means.

    python bench/overhead.py --data ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
from common import emit, parser, store_uri

WARMUP_STEPS = 100


def bare_loop(data_source: str, steps: int, threads: int, batch: int) -> dict[str, float]:
    """The minimal loop: model, AdamW, clip, cosine lr; nothing else."""
    import math

    from asymptote.config import DataConfig, ModelConfig
    from asymptote.data import EpochBatcher, get_tokenizer, read_source, split_tokens
    from asymptote.model import Decoder, lm_loss
    from asymptote.optim import param_groups

    started = time.perf_counter()
    torch.set_num_threads(threads)
    tok = get_tokenizer("byte")
    train, _ = split_tokens(tok.encode(read_source(DataConfig(source=data_source).source)), 0.1)
    torch.manual_seed(0)
    cfg = ModelConfig(preset="baby")
    model = Decoder(cfg)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    batches = EpochBatcher(train, cfg.block_size, batch, data_seed=0)
    for step in range(steps):
        if step == WARMUP_STEPS:
            steady_start = time.perf_counter()
        lr = (
            1e-3 * (step + 1) / 100
            if step < 100
            else 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * (step - 100) / (steps - 100)))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches.next_batch()
        loss = lm_loss(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    end = time.perf_counter()
    tokens = (steps - WARMUP_STEPS) * batch * cfg.block_size
    return {
        "steady_tok_per_s": tokens / (end - steady_start),
        "wall_s": end - started,
        "final_loss": float(loss),
    }


@contextlib.contextmanager
def mlflow_server():
    """`mlflow server` on a free loopback port (SQLite backend, local artifacts); yields its URI."""
    root = Path(tempfile.mkdtemp(prefix="asymptote-bench-mlflow-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += [
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "a"),
    ]
    # without the GenAI job runner: its polling workers take about half a core while idle
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def project_loop(
    data_source: str, steps: int, threads: int, batch: int, store: str, tracking: str | None = None
) -> dict[str, float]:
    from asymptote.config import PretrainConfig
    from asymptote.flows.pretraining import pretrain
    from asymptote.store import Store

    cfg = PretrainConfig.model_validate(
        {
            "name": "overhead",
            "model": {"preset": "baby"},
            "data": {"source": data_source},
            "train": {
                "max_steps": steps,
                "batch_size": batch,
                "lr": 1e-3,
                "min_lr_ratio": 0.1,
                "beta2": 0.99,
                "warmup_steps": 100,
                "eval_every": 500,
            },
            "compute": {"cpus_per_worker": threads},
            "store": {"uri": store, "tracking": {"uri": tracking}},
        }
    )
    started = time.perf_counter()
    res = pretrain(cfg)
    wall = time.perf_counter() - started
    metrics = [
        json.loads(line) for line in Store(store).read(res.run.rel, "metrics.jsonl").decode().splitlines()
    ]
    first = next(m for m in metrics if m["step"] >= WARMUP_STEPS)
    last = metrics[-1]
    tokens = last["tokens"] - first["tokens"]
    windows = list(
        zip(metrics, metrics[1:], strict=False)
    )  # each record's tok_per_s covers the steps since the previous one
    step_time = sum(
        (b["tokens"] - a["tokens"]) / b["tok_per_s"] for a, b in windows if a["step"] >= first["step"]
    )
    return {
        "steady_tok_per_s": tokens / (last["elapsed_s"] - first["elapsed_s"]),
        "step_tok_per_s": tokens / step_time,
        "wall_s": wall,
        "final_val_loss": res.metrics["val_loss"],
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=12)
    args = p.parse_args()
    print(f"bare loop ({args.steps} steps, {args.threads} threads) ...", flush=True)
    bare1 = bare_loop(args.data, args.steps, args.threads, args.batch)
    print(f"  {bare1}\nproject loop through the pretrain flow ...", flush=True)
    proj = project_loop(args.data, args.steps, args.threads, args.batch, store_uri(args.store))
    print(f"  {proj}", flush=True)
    # Tracking off, on, on, off (each into a fresh store): a drift in machine load cancels in the means.
    with mlflow_server() as server:
        runs: dict[str, list[dict[str, float]]] = {"off": [proj], "on": []}
        for mode in ("on", "on", "off"):
            print(f"project loop, tracking {mode} ...", flush=True)
            tracking = server if mode == "on" else None
            runs[mode].append(
                project_loop(args.data, args.steps, args.threads, args.batch, store_uri(None), tracking)
            )
            print(f"  {runs[mode][-1]}", flush=True)
    print("bare loop again ...", flush=True)
    bare2 = bare_loop(args.data, args.steps, args.threads, args.batch)
    print(f"  {bare2}", flush=True)
    bare_tps = (bare1["steady_tok_per_s"] + bare2["steady_tok_per_s"]) / 2
    bare_wall = (bare1["wall_s"] + bare2["wall_s"]) / 2
    tracked_tps, untracked_tps = (sum(r["steady_tok_per_s"] for r in runs[m]) / 2 for m in ("on", "off"))
    emit(
        {
            "steady_ratio": round(proj["steady_tok_per_s"] / bare_tps, 4),
            "step_ratio": round(proj["step_tok_per_s"] / bare_tps, 4),
            "end_to_end_ratio": round(bare_wall / proj["wall_s"], 4),
            "tracking_steady_ratio": round(tracked_tps / untracked_tps, 4),
            "bare_steady_tok_per_s": round(bare_tps),
            "project_steady_tok_per_s": round(proj["steady_tok_per_s"]),
            "project_step_tok_per_s": round(proj["step_tok_per_s"]),
            "bare_wall_s": round(bare_wall, 1),
            "project_wall_s": round(proj["wall_s"], 1),
            "tracked_steady_tok_per_s": [round(r["steady_tok_per_s"]) for r in runs["on"]],
            "untracked_steady_tok_per_s": [round(r["steady_tok_per_s"]) for r in runs["off"]],
            "bare_runs_tok_per_s": [round(bare1["steady_tok_per_s"]), round(bare2["steady_tok_per_s"])],
            "steps": args.steps,
            "threads": args.threads,
        },
        args.save,
        args.data,
    )


if __name__ == "__main__":
    main()
