"""GPU throughput, MFU and DDP of asymptote's training path against a bare torch loop, in one run.

Prepared for a GPU that is lent for a few minutes: one call brings back every figure, under a hard
deadline. On CUDA, for `paper-150m` and the largest `paper-*` that fits one GPU, two loops run one after
the other on the same model, batch and sequence length:
- project: `infra.launch.launch` (a Ray task running TorchTrainer's local mode, as `asymptote pretrain`
  does for one worker) -> Trainer, with its reports, interval evaluations and checkpoints at the
  default cadence, bf16 autocast and fused AdamW; throughput from its own records after warm-up;
- bare: the same Decoder, optimizer config, clipping and autocast with the tokens resident on the GPU
  and nothing else (no loader, reports, evaluation or checkpoints): the strict baseline.
Each eager and under torch.compile (where it works). Then: NCCL init + all_reduce at world size 1,
one short run through a Ray Train worker group, and a 2-rank gloo DDP run on CPU whose ranks must end
with bit-identical weights. On CPU the script runs a tiny preset for a few steps (CI keeps it working).

Figures (last line, JSON): ratio = project tokens/s / bare tokens/s; step_ratio uses the project's
time inside train steps only; mfu = tokens/s x train FLOPs per token (asymptote.flops, PaLM's count)
/ the device's dense bf16 peak (PEAK_BF16_TFLOPS or --peak-tflops; none on CPU, so null there unless
given); peak_mem_gb = torch.cuda.max_memory_allocated of the training process (CPU: its peak RSS).

    python bench/gpu.py --data builtin:python-docs --json-out $OUT/gpu.json 2>$OUT/gpu.log   # a GPU
    python bench/gpu.py --data builtin:python-docs                                # no GPU: the CPU path

The GPU machine needs a CUDA build of the pinned torch (pyproject) beside the project's other
dependencies; the script itself needs nothing else (builtin:python-docs ships with CPython).
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from common import emit, parser, store_uri

from asymptote.config import ComputeConfig, DataConfig, ModelConfig, StoreConfig, TrainConfig
from asymptote.flops import train_flops_per_token
from asymptote.job import peak_memory_gb
from asymptote.model import Decoder, count_params, lm_loss

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets: the H100 SXM and
# H200 sheets list "BF16 Tensor Core 1,979 TFLOPS" with sparsity, i.e. 989 dense; H100 NVL 1,671 ->
# 835; H100 PCIe 1,513 -> 756; A100 312 dense; L40S 733 -> 362; L4 242 -> 121. First match wins.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
]
LARGEST = [("paper-1.4b", 16), ("paper-600m", 32), ("paper-300m", 64)]  # tried in order on CUDA
RESULT: dict = {"runs": [], "skipped": [], "errors": []}  # filled as the run goes; emitted at the end


def log(msg: str) -> None:
    print(f"[gpu-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_for_name(name: str) -> float | None:
    """Dense bf16 peak (TFLOP/s) of a device named like torch.cuda.get_device_name(), if tabled."""
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "no bf16 peak known for a CPU"
    name = torch.cuda.get_device_name(device)
    peak = peak_for_name(name)
    return (
        peak,
        f"NVIDIA datasheet, dense bf16 ({name})" if peak else f"no entry for {name!r}; pass --peak-tflops",
    )


def mfu(tokens_per_s: float | None, cfg: ModelConfig, peak: float | None, causal: bool = False):
    if not tokens_per_s or not peak:
        return None
    return tokens_per_s * train_flops_per_token(cfg, causal) / (peak * 1e12)


class Deadline:
    """Wall-clock budget: phases that would not fit are skipped; a watchdog prints what exists and exits."""

    def __init__(self, seconds: float, args):
        self.started, self.seconds, self.args = time.perf_counter(), seconds, args
        watchdog = threading.Timer(seconds + 20, self._expire)
        watchdog.daemon = True
        watchdog.start()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def allows(self, what: str, need_s: float) -> bool:
        if self.left() >= need_s:
            return True
        RESULT["skipped"].append(f"{what}: needs ~{need_s:.0f} s, {self.left():.0f} s left")
        log(f"skip {what}")
        return False

    def _expire(self) -> None:
        RESULT["errors"].append(f"hard deadline: stopped after {self.seconds + 20:.0f} s")
        report(headline(RESULT, time.perf_counter() - self.started), self.args)
        os._exit(3)


# ----------------------------------------------------------------------------- the bare loop


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step_fn(cfg: ModelConfig, train: TrainConfig, tokens: np.ndarray, device, compiled: bool):
    """One training step of the minimal loop: random windows gathered on the device, forward under
    autocast, backward, clip, fused AdamW (the project's optimizer config); nothing else."""
    from asymptote.optim import build_optimizer, set_lr
    from asymptote.trainer import autocast_dtype

    torch.manual_seed(train.train_seed)
    model = Decoder(cfg).to(device)
    opt = build_optimizer(model, train, device)
    forward = torch.compile(model) if compiled else model
    data = torch.from_numpy(tokens.astype(np.int64)).to(device)
    offsets = torch.arange(cfg.block_size + 1, device=device)
    dtype = autocast_dtype(train.precision, device)

    def step() -> torch.Tensor:
        set_lr(opt, train.lr)
        starts = torch.randint(0, len(data) - cfg.block_size - 1, (train.batch_size, 1), device=device)
        chunk = data[starts + offsets]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = lm_loss(forward(chunk[:, :-1]), chunk[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def timed(step, n: int, device: torch.device) -> tuple[float, torch.Tensor | None]:
    """Seconds for n steps, the device drained at both ends (one sync per measurement, none per step)."""
    sync(device)
    t0, loss = time.perf_counter(), None
    for _ in range(n):
        loss = step()
    sync(device)
    return time.perf_counter() - t0, loss


def bare_loop(cfg, train, tokens, device, compiled: bool, warmup: int, steps: int | None, plan) -> dict:
    """Warm up (compiles), pick the measured step count with `plan(step_seconds)` unless given, measure."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = bare_step_fn(cfg, train, tokens, device, compiled)
    warm, _ = timed(step, warmup, device)
    if steps is None:
        probe, _ = timed(step, 5, device)
        steps = plan(probe / 5)
    seconds, loss = timed(step, steps, device)
    return {
        "tokens_per_s": steps * train.batch_size * cfg.block_size / seconds,
        "steps": steps,
        "step_ms": 1e3 * seconds / steps,
        "warmup_s": warm,
        "peak_mem_gb": peak_memory_gb(device),
        "final_loss": float(loss),
    }


def step_plan(seconds: float, every: int, most: int):
    """Measured steps for a loop: about `seconds` of work, a multiple of the report interval, at least
    two reports and at most `most` (one checkpoint interval: its evaluations and checkpoint amortised)."""

    def plan(step_s: float) -> int:
        steps = round(seconds / step_s / every) * every
        return int(min(max(steps, 2 * every), most))

    return plan


def cadence_in(train: TrainConfig, first: int, last: int) -> dict[str, int]:
    """Interval evaluations and checkpoints inside the measured records (first, last]: one at step s
    runs after the record of step s, so it counts for s in [first, last)."""

    def count(every: int) -> int:
        return (last - 1) // every - (first - 1) // every

    return {"evals": count(train.eval_every), "checkpoints": count(train.checkpoint_every)}


def release(device: torch.device) -> None:
    """Drop compiled graphs and cached blocks so the next loop (maybe another process) gets the memory."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- the project's loop


def project_job(root: str, label: str, model, train, data: DataConfig, compute: ComputeConfig):
    from asymptote.job import make_job
    from asymptote.shards import prepare_dataset
    from asymptote.store import Store

    store = Store(StoreConfig(uri=f"{root}/{label}"))  # one store per run: compile is not in the key
    data_rel = prepare_dataset(data, store)
    return make_job(
        name=label,
        model=model,
        data=data,
        train=train,
        data_artifact=data_rel,
        compute=compute,
        store=store.cfg,
    )


def steady_rates(metrics: list[dict], warmup: int) -> tuple[float, float]:
    """(tokens/s of the whole loop, tokens/s inside train steps) from the first record at or after
    warm-up to the last: reports, evaluations and checkpoints count in the first, not the second."""
    after = [m for m in metrics if m["step"] >= warmup]
    first, last = after[0], after[-1]
    tokens = last["tokens"] - first["tokens"]
    pairs = [(a, b) for a, b in zip(metrics, metrics[1:], strict=False) if a["step"] >= first["step"]]
    step_s = sum((b["tokens"] - a["tokens"]) / b["tok_per_s"] for a, b in pairs)
    return tokens / (last["elapsed_s"] - first["elapsed_s"]), tokens / step_s


def project_loop(job, warmup: int) -> dict:
    from asymptote.infra.launch import launch
    from asymptote.store import Store

    t0 = time.perf_counter()
    summary = launch(job)
    wall = time.perf_counter() - t0
    lines = Store(job.store).read(job.run_rel, "metrics.jsonl").decode().splitlines()
    steady, in_steps = steady_rates([json.loads(line) for line in lines], warmup)
    return {
        "tokens_per_s": steady,
        "step_tokens_per_s": in_steps,
        "steps": summary["steps"] - warmup,
        "wall_s": wall,
        "peak_mem_gb": summary.get("peak_mem_gb"),
        "val_loss": summary["val_loss"],
        "launcher": job.compute.launcher,
    }


# ----------------------------------------------------------------------------- one side-by-side phase


def phase(args, device, preset: str, batch: int, compiled: bool, root: str, warmup_reports=None, most=None):
    """Bare loop, then the project's loop, same model/batch/steps; appended to RESULT["runs"]."""
    t0, cfg, every = time.perf_counter(), ModelConfig(preset=preset), args.log_every
    warmup = (warmup_reports or args.warmup_reports) * every
    train = TrainConfig(batch_size=batch, lr=args.lr, warmup_steps=warmup, log_every=every)
    label = f"{preset}-{'compiled' if compiled else 'eager'}"
    row = {"preset": preset, "compiled": compiled, "batch": batch, "seq_len": cfg.block_size}
    RESULT["runs"].append(row)
    log(f"{label}: bare loop")
    plan = step_plan(args.seconds, every, most or train.checkpoint_every)
    row["bare"] = bare_loop(
        cfg, train, load_tokens(args.data, root), device, compiled, warmup, args.steps, plan
    )
    release(device)
    steps = row["bare"]["steps"]
    train = train.model_copy(update={"max_steps": warmup + steps})
    compute = ComputeConfig(
        cpus_per_worker=args.threads, use_gpu=device.type == "cuda", compile=compiled, max_failures=0
    )
    log(f"{label}: project loop ({warmup}+{steps} steps)")
    require_ray_gpu(device)
    job = project_job(root, label, cfg, train, DataConfig(source=args.data), compute)
    row["project"] = project_loop(job, warmup)
    row["in_window"] = cadence_in(train, warmup, warmup + steps)
    row["ratio"] = row["project"]["tokens_per_s"] / row["bare"]["tokens_per_s"]
    row["step_ratio"] = row["project"]["step_tokens_per_s"] / row["bare"]["tokens_per_s"]
    row["mfu"] = mfu(row["project"]["tokens_per_s"], cfg, RESULT.get("peak_tflops"))
    row["bare_mfu"] = mfu(row["bare"]["tokens_per_s"], cfg, RESULT.get("peak_tflops"))
    row["phase_s"] = time.perf_counter() - t0
    log(f"{label}: {json.dumps(row, default=float)}")
    return row


def require_ray_gpu(device: torch.device) -> None:
    """A GPU task on a Ray that sees no GPU would wait forever: fail the phase instead."""
    import ray

    if device.type == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
        raise RuntimeError(f"Ray sees no GPU ({ray.cluster_resources()}); the project loop cannot be placed")


def load_tokens(source: str, root: str) -> np.ndarray:
    from asymptote.shards import load_dataset, prepare_dataset
    from asymptote.store import Store

    store = Store(StoreConfig(uri=f"{root}/data"))
    return load_dataset(store, prepare_dataset(DataConfig(source=source), store))[0]


def guarded(what: str, fn, *a, **kw):
    """Run one phase; a failure is recorded (with its cause) and the script goes on to the next."""
    try:
        return fn(*a, **kw)
    except Exception as err:  # noqa: BLE001 - a broken phase must not lose the figures of the others
        RESULT["errors"].append(f"{what}: {type(err).__name__}: {str(err)[:400]}")
        log(f"{what} failed:\n{traceback.format_exc()}")
        return None
    finally:
        release(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))


def largest_that_fits(args, device, root: str) -> None:
    """The largest paper-* preset whose bare loop fits the GPU at its batch, then the project's loop."""
    for preset, batch in LARGEST:
        try:  # one report of warm-up, at most four measured: a 1.4B step takes ~0.2 s on an H100-class GPU
            phase(args, device, preset, batch, False, root, warmup_reports=1, most=4 * args.log_every)
            RESULT["largest"] = preset
            return
        except torch.OutOfMemoryError:
            RESULT["runs"].pop()
            RESULT["skipped"].append(f"{preset} at batch {batch}: out of memory")
            release(device)


# ----------------------------------------------------------------------------- NCCL, Ray Train, DDP


def nccl_check(device: torch.device) -> dict:
    """torch.distributed with the NCCL backend at world size 1: init, one all_reduce, destroy."""
    import torch.distributed as tdist

    init = Path(tempfile.mkdtemp()) / "pg"
    try:
        torch.cuda.set_device(device)
        tdist.init_process_group("nccl", init_method=f"file://{init}", rank=0, world_size=1)
        t = torch.full((8,), 3.0, device=device)
        tdist.all_reduce(t)
        sync(device)
        version = ".".join(map(str, torch.cuda.nccl.version()))
        return {"nccl_ok": bool(torch.all(t == 3.0)), "nccl_version": version}
    except Exception as err:  # noqa: BLE001 - reported, not raised: the other figures still count
        return {"nccl_ok": False, "nccl_error": f"{type(err).__name__}: {str(err)[:300]}"}
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()


def ray_train_check(args, device, root: str) -> dict:
    """One short run through a Ray Train worker group (TorchConfig: NCCL on CUDA, gloo on CPU)."""
    from asymptote.infra.launch import launch

    train = TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, log_every=10)
    compute = ComputeConfig(launcher="ray_train", cpus_per_worker=args.threads, use_gpu=device.type == "cuda")
    model = ModelConfig(preset="cpu-0.1m")  # a check of the worker group and its backend, not a speed
    job = project_job(root, "ray-train", model, train, DataConfig(source=args.data), compute)
    t0 = time.perf_counter()
    summary = launch(job)
    ok = summary["steps"] == 20 and math.isfinite(summary["val_loss"]) and summary["device"] == device.type
    return {"ray_train_ok": ok, "ray_train_wall_s": time.perf_counter() - t0}


def _ddp_rank(rank: int, job_json: str, init_file: str, out_dir: str) -> None:
    """One gloo rank: the project's Trainer under DDP, as run_job builds and drives it."""
    import hashlib

    import torch.distributed as tdist

    from asymptote.dist import DistEnv
    from asymptote.job import StoreCheckpoints, TrainJob, build_trainer, schedule_driver
    from asymptote.store import Store

    def digest(model) -> str:
        h = hashlib.sha256()
        for p in model.parameters():
            h.update(p.detach().cpu().numpy().tobytes())
        return h.hexdigest()

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        env, job = DistEnv.detect(use_gpu=False), TrainJob.model_validate_json(job_json)
        store = Store(job.store)
        trainer, total, _ = build_trainer(job, store, env)
        before = digest(trainer.model)
        last = schedule_driver(trainer, job, store, total, lambda r: None, StoreCheckpoints(store, job, env))
        out = {
            "world": env.world,
            "before": before,
            "after": digest(trainer.model),
            "loss": last["train_loss"],
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        tdist.destroy_process_group()


def ddp_check(args, root: str) -> dict:
    """Two gloo ranks on CPU (tiny preset): identical final weights, and weights that moved."""
    train = TrainConfig(batch_size=8, max_steps=8, warmup_steps=2, log_every=4)
    compute = ComputeConfig(num_workers=2, use_gpu=False)
    job = project_job(
        root, "ddp", ModelConfig(preset="cpu-0.1m"), train, DataConfig(source=args.data), compute
    )
    out = Path(tempfile.mkdtemp())
    torch.multiprocessing.spawn(_ddp_rank, args=(job.model_dump_json(), str(out / "pg"), str(out)), nprocs=2)
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    moved = r0["before"] != r0["after"]
    return {
        "ddp_ranks_identical": r0["after"] == r1["after"] and moved and r0["world"] == r1["world"] == 2,
        "ddp_train_loss": r0["loss"],
    }


# ----------------------------------------------------------------------------- the JSON line


def headline(result: dict, wall: float) -> dict:
    """The main preset's figures (its compiled runs when they worked, else eager) and everything else."""
    main = [r for r in result["runs"] if r["preset"] == result.get("preset") and "ratio" in r]
    best = ([r for r in main if r["compiled"]] or main or [{}])[-1]
    cfg = ModelConfig(preset=result["preset"]) if result.get("preset") else None
    project, bare = best.get("project", {}), best.get("bare", {})
    peak = result.get("peak_tflops")
    return {
        "device": result.get("device"),
        "preset": result.get("preset"),
        "params": result.get("params"),
        "tokens_per_s": project.get("tokens_per_s"),
        "bare_tokens_per_s": bare.get("tokens_per_s"),
        "ratio": best.get("ratio"),
        "step_ratio": best.get("step_ratio"),
        "mfu": mfu(project.get("tokens_per_s"), cfg, peak) if cfg else None,
        "bare_mfu": mfu(bare.get("tokens_per_s"), cfg, peak) if cfg else None,
        "mfu_causal": mfu(project.get("tokens_per_s"), cfg, peak, causal=True) if cfg else None,
        "peak_mem_gb": project.get("peak_mem_gb"),
        "bare_peak_mem_gb": bare.get("peak_mem_gb"),
        "compiled": best.get("compiled"),
        "batch": best.get("batch"),
        "seq_len": best.get("seq_len"),
        "wall_s": wall,
        **{k: v for k, v in result.items() if k not in ("device", "preset", "params", "runs")},
        "runs": result["runs"],
    }


# ----------------------------------------------------------------------------- main


def arguments():
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--preset", default=None, help="main preset (default: paper-150m on CUDA, cpu-0.1m on CPU)"
    )
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: 64 CUDA, 8 CPU)")
    p.add_argument("--steps", type=int, default=None, help="measured steps (default: ~--seconds' worth)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per loop when --steps unset")
    p.add_argument("--json-out", default=None, help="also write the JSON line to this file")
    p.add_argument("--log-every", type=int, default=None, help="report interval (default: 25 CUDA, 2 CPU)")
    p.add_argument("--warmup-reports", type=int, default=2, help="report intervals of warm-up, not timed")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--compile", choices=["auto", "on", "off", "both"], default="auto", help="auto: both on CUDA"
    )
    p.add_argument("--largest", choices=["auto", "on", "off"], default="auto", help="auto: on CUDA only")
    p.add_argument("--ray-train", choices=["auto", "on", "off"], default="auto", help="auto: on CUDA only")
    p.add_argument("--no-ddp", action="store_true", help="skip the 2-rank gloo check")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="device dense bf16 peak (overrides the table)"
    )
    p.add_argument("--deadline-s", type=float, default=420.0, help="wall-clock budget of the whole script")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per loop (default: 8 CUDA, 1 CPU)")
    return p.parse_args()


def defaults(args, cuda: bool):
    args.preset = args.preset or ("paper-150m" if cuda else "cpu-0.1m")
    args.batch = args.batch or (64 if cuda else 8)
    args.log_every = args.log_every or (25 if cuda else 2)
    args.threads = args.threads or (min(8, os.cpu_count() or 1) if cuda else 1)
    if not cuda and args.steps is None:
        args.steps = 6 * args.log_every
    on = {"on": True, "off": False, "auto": cuda}
    args.compile_modes = {"auto": [False, True] if cuda else [False], "on": [True], "off": [False]}.get(
        args.compile, [False, True]
    )
    args.run_largest, args.run_ray_train = on[args.largest], on[args.ray_train]
    return args


def phase_estimate(args, compiled: bool) -> float:
    """Seconds a main-preset phase needs: the last measured phase's time if any, plus compilation
    (inductor compiles the bare model, the project's worker reuses most of it from the on-disk cache)."""
    done = [r["phase_s"] for r in RESULT["runs"] if "phase_s" in r]
    base = done[-1] if done else 2 * args.seconds + 40
    return base + (120 if compiled else 0)


def run_phases(args, device, deadline: Deadline, root: str) -> None:
    """In priority order, each only if it fits in what is left of the deadline."""
    cuda = device.type == "cuda"
    if cuda:
        RESULT.update(nccl_check(device))
    for compiled in args.compile_modes:
        need = phase_estimate(args, compiled) if cuda else 10
        if deadline.allows(f"{args.preset} compiled={compiled}", need):
            what = f"{args.preset} compiled={compiled}"
            guarded(what, phase, args, device, args.preset, args.batch, compiled, root)
    if args.run_largest and deadline.allows("largest paper-*", 150):
        guarded("largest paper-*", largest_that_fits, args, device, root)
    if args.run_ray_train and deadline.allows("ray_train worker group", 60):
        RESULT.update(guarded("ray_train", ray_train_check, args, device, root) or {"ray_train_ok": False})
    if not args.no_ddp and deadline.allows("gloo DDP check", 40):
        RESULT.update(guarded("gloo DDP", ddp_check, args, root) or {"ddp_ranks_identical": False})


def main() -> None:
    args = arguments()
    deadline = Deadline(args.deadline_s, args)
    cuda = torch.cuda.is_available()
    args = defaults(args, cuda)
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    torch.set_num_threads(args.threads)
    peak, source = peak_tflops(device, args.peak_tflops)
    cfg = ModelConfig(preset=args.preset)
    RESULT.update(
        device=torch.cuda.get_device_name(device) if cuda else f"cpu ({args.threads} threads)",
        preset=args.preset,
        params=count_params(Decoder(cfg)),
        non_embedding_params=count_params(Decoder(cfg), non_embedding=True),
        flops_per_token=train_flops_per_token(cfg),
        peak_tflops=peak,
        peak_source=source,
        torch=torch.__version__,
        deadline_s=args.deadline_s,
    )
    from asymptote.infra.cluster import compute_session

    root = args.store or bench_root(cuda)
    with compute_session(num_cpus=os.cpu_count() if cuda else 2):
        run_phases(args, device, deadline, root)
    report(headline(RESULT, time.perf_counter() - deadline.started), args)


def report(result: dict, args) -> None:
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, default=float) + "\n")
    emit(result, args.save, args.data)


def bench_root(cuda: bool) -> str:
    """A fresh store; in RAM on a GPU machine with room (a 1.4B run's checkpoint is ~15 GB to write
    and hash), else a temporary folder."""
    shm = Path("/dev/shm")
    if cuda and shm.is_dir() and shutil.disk_usage(shm).free > 48 * 2**30:
        return tempfile.mkdtemp(prefix="asymptote-gpu-bench-", dir=shm)
    return store_uri(None)


if __name__ == "__main__":
    main()
