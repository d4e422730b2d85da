"""One training run as a self-contained, picklable job: what every launcher executes on each worker.

`TrainJob` says everything a worker needs (shape, data artifact, optimisation, objective, driver);
`run_job` builds model, optimizer and data, resumes from the latest checkpoint, drives training and
(rank 0) commits the run artifact. No Ray, no Prefect: the same call runs under Ray Train, in a
Ray task, under torchrun, or in a plain Python process.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

from asymptote.checkpoint import (
    STATE,
    WEIGHTS,
    host_copy,
    load_state,
    load_weights,
    save_state,
    save_tensors,
    save_weights,
)
from asymptote.config import ModelConfig
from asymptote.data import EpochBatcher, steps_for
from asymptote.dist import DistEnv
from asymptote.evaluation import evaluate_split
from asymptote.job_spec import (  # noqa: F401  (re-exported: the job API in one place)
    BATCHES,
    DRIVERS,
    OBJECTIVES,
    TrainJob,
    job_code_version,
    job_key,
    make_job,
)
from asymptote.model import Decoder, count_params
from asymptote.optim import build_optimizer
from asymptote.plots import plot_loss_curve
from asymptote.schedules import make_schedule
from asymptote.shards import carry_tokenizer, load_dataset, load_meta, load_split
from asymptote.store import IntegrityError, Store, layout
from asymptote.trainer import Reporter, Trainer, autocast_dtype, cross_entropy, fit

log = logging.getLogger(__name__)


def _lazy(path: str) -> Callable:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def _registered(registry: dict[str, str], spec: dict[str, Any], what: str) -> Callable:
    kind = spec.get("kind")
    if kind not in registry:
        raise ValueError(f"{what}.kind={kind!r}: unknown; allowed: {', '.join(registry)}")
    return _lazy(registry[kind])


def ce_objective(job: TrainJob, store: Store, env: DistEnv):
    return cross_entropy


def epoch_batches(job: TrainJob, store: Store, env: DistEnv, train_tokens) -> EpochBatcher:
    return EpochBatcher(
        train_tokens,
        job.model.block_size,
        job.train.batch_size,
        job.train.data_seed,
        rank=env.rank,
        world=env.world,
    )


# ----------------------------------------------------------------------------- checkpoints


class StoreCheckpoints:
    """Checkpoints as committed store artifacts runs/<key>/checkpoints/step_<N>; rank 0 writes.

    `save` copies the state to host memory (the only part on the training loop's critical path) and
    writes, hashes and uploads it in a background thread while training goes on: on a GPU, writing a
    150M model's checkpoint takes as long as tens of steps, and uploading to S3 longer. One write is in
    flight at most; `wait` (called by `save`, and at the end of training) joins it and raises its
    error. A write that a crash interrupts never commits, so a resume finds the previous checkpoint.
    """

    def __init__(self, store: Store, job: TrainJob, env: DistEnv):
        self.store, self.job, self.env = store, job, env
        self.prefix = layout("checkpoints", key=job.key)
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def steps(self) -> list[int]:
        self.store.invalidate()
        names = [n for n in self.store.ls(self.prefix) if n.startswith("step_")]
        return sorted(int(n[5:]) for n in names if self.store.has(f"{self.prefix}/{n}"))

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies; a corrupt one is skipped (the previous one, or a start
        from scratch, gives the same final state, since the data order and RNG are in the checkpoint)."""
        for step in reversed(self.steps()):
            try:
                return self.store.localize(f"{self.prefix}/step_{step:08d}")
            except IntegrityError as err:
                log.warning("skipping checkpoint step %d: %s", step, err)
        return None

    def save(self, trainer: Trainer) -> None:
        self.wait()
        if self.env.is_main:
            state = host_copy(trainer.state_dict())  # the loop may change its tensors from here on
            self._writer = threading.Thread(
                target=self._write, args=(trainer.step, state), name="checkpoint-writer"
            )
            self._writer.start()
        self.env.barrier()  # ranks leave together (the write itself may still be in flight)

    def wait(self) -> None:
        """Block until the checkpoint in flight is committed; raise if writing it failed."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("writing a checkpoint failed") from error

    def _write(self, step: int, state: dict[str, Any]) -> None:
        try:
            meta = {"step": step, "run": self.job.key, "model": self.job.model.model_dump()}
            with self.store.writer(f"{self.prefix}/step_{step:08d}", kind="checkpoint", meta=meta) as d:
                save_tensors(state["model"], d / WEIGHTS)
                save_state(d / STATE, {k: v for k, v in state.items() if k != "model"})
            for old in self.steps()[: -self.job.keep_checkpoints]:
                self.store.rm(f"{self.prefix}/step_{old:08d}")
        except BaseException as err:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = err


def resume(trainer: Trainer, checkpoints: StoreCheckpoints) -> bool:
    folder = checkpoints.latest()
    if folder is None:
        return False
    state = load_state(folder / STATE)
    state["model"] = load_weights(folder / WEIGHTS, trainer.env.device)
    trainer.load_state_dict(state)
    return True


# ----------------------------------------------------------------------------- building a run


def build_model(job: TrainJob, store: Store, env: DistEnv) -> torch.nn.Module:
    torch.manual_seed(job.train.train_seed)
    model = Decoder(job.model)
    if job.init_from:
        model.load_state_dict(load_weights(store.localize(job.init_from) / WEIGHTS))
    return model.to(env.device)


def wrap_ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    if not env.distributed:
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def compile_if(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile around the (DDP-wrapped) model, as PyTorch recommends for DDP; `unwrap` undoes it."""
    return torch.compile(model) if enabled else model


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process: tensors on the CUDA device, else the process's peak RSS (which, in
    a reused Ray worker, covers the worker's earlier tasks too)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def build_trainer(job: TrainJob, store: Store, env: DistEnv) -> tuple[Trainer, int, dict]:
    train_tokens, val_tokens, meta = load_dataset(store, job.data_artifact, job.data.max_train_tokens)
    if meta["vocab_size"] > job.model.vocab_size:
        raise ValueError(
            f"model.vocab_size={job.model.vocab_size} is smaller than the tokenizer's "
            f"{meta['vocab_size']}; set model.vocab_size >= {meta['vocab_size']}"
        )
    model = build_model(job, store, env)
    batches = _registered(BATCHES, job.batches, "batches")(job, store, env, train_tokens)
    objective = _registered(OBJECTIVES, job.objective, "objective")(job, store, env)
    per_rank = job.train.batch_size // env.world
    micro = job.compute.micro_batch_size or per_rank
    if per_rank % micro:
        raise ValueError(f"compute.micro_batch_size={micro} must divide the per-worker batch {per_rank}")
    trainer = Trainer(
        compile_if(wrap_ddp(model, env), job.compute.compile),
        build_optimizer(model, job.train, env.device),
        batches,
        job.train,
        env,
        val_tokens,
        job.model.block_size,
        objective,
        micro_batches=per_rank // micro,
    )
    total = steps_for(
        len(train_tokens), job.model.block_size, job.train.batch_size, job.train.epochs, job.train.max_steps
    )
    info = {
        "params": count_params(model),
        "non_embedding_params": count_params(model, non_embedding=True),
        "n_train_tokens": int(len(train_tokens)),
        "data_sha256": meta["source_sha256"],
    }
    return trainer, total, info


def schedule_driver(
    trainer: Trainer, job: TrainJob, store: Store, total: int, report: Reporter, checkpoints: StoreCheckpoints
) -> dict[str, Any]:
    table = None
    if job.train.schedule == "replay":
        table = json.loads(store.get_bytes(store.relpath(job.train.schedule_file)))["lrs"]
    lr = make_schedule(
        job.train.schedule, job.train.lr, total, job.train.warmup_steps, job.train.min_lr_ratio, table
    )
    return fit(trainer, lr, total, report, checkpoints)


def run_job(job: TrainJob, env: DistEnv, report: Reporter) -> dict[str, Any]:
    """Train (or resume) the run and, on rank 0, commit runs/<key>. Returns the run summary."""
    store = Store(job.store)
    if store.has(job.run_rel):  # finished before (another machine, an earlier attempt): nothing to do
        return store.read_json(job.run_rel, "summary.json")
    started = time.time()
    trainer, total, info = build_trainer(job, store, env)
    checkpoints = StoreCheckpoints(store, job, env)
    resumed = resume(trainer, checkpoints)
    last = _registered(DRIVERS, job.driver, "driver")(trainer, job, store, total, report, checkpoints)
    checkpoints.wait()  # the final checkpoint is committed before the run is
    summary = {
        "key": job.key,
        "name": job.name,
        "steps": trainer.step,
        "total_steps": total,
        "resumed": resumed,
        "val_loss": last.get("val_loss"),
        "train_loss": last.get("train_loss"),
        **info,
        "tokens": trainer.step * job.train.batch_size * job.model.block_size,
        "wall_s": time.time() - started,
        "world_size": env.world,
        "device": env.device.type,
        "peak_mem_gb": peak_memory_gb(env.device),
    }
    if env.is_main:
        commit_run(store, job, trainer, summary)
    env.barrier()
    return summary


def commit_run(store: Store, job: TrainJob, trainer: Trainer, summary: dict[str, Any]) -> None:
    meta = {
        "summary": summary,
        "model": job.model.model_dump(),
        "code_version": job_code_version(job),
        "config": job.model_dump(exclude={"store", "compute", "progress_hub"}),
    }
    with store.writer(job.run_rel, kind="run", meta=meta) as d:
        meta.update(carry_tokenizer(store, job.data_artifact, d))
        save_weights(trainer.model, d / WEIGHTS, metadata={"run": job.key})
        (d / "config.json").write_text(
            json.dumps(meta["config"] | {"code_version": meta["code_version"]}, indent=1)
        )
        (d / "summary.json").write_text(json.dumps(summary, indent=1))
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in trainer.metrics))
        plot_loss_curve(trainer.metrics, d / "loss.png", title=f"{job.name} ({job.key})")
    for step in StoreCheckpoints(store, job, DistEnv()).steps()[:-1]:  # keep only the final state
        store.rm(f"{job.run_rel}/checkpoints/step_{step:08d}")


def model_from_run(store: Store, rel: str, device: str | torch.device = "cpu") -> Decoder:
    """Load a committed run, checkpoint or soup (any artifact whose manifest names its model) as a Decoder."""
    model = Decoder(ModelConfig.model_validate(store.manifest(rel).meta["model"]))
    model.load_state_dict(load_weights(store.localize(rel) / WEIGHTS, device))
    return model.to(device).eval()


def evaluate_run(store: Store, run_rel: str, data_rel: str) -> dict[str, float]:
    """A run's loss, bits per token and bits per byte on a corpus' validation and, when it has one,
    test split, on the device this process was given (bf16 on CUDA, as the run's own evaluation)."""
    env = DistEnv.detect()  # the GPU Ray assigned to this task, if any (Ray hides the others)
    model, meta = model_from_run(store, run_rel, env.device), load_meta(store, data_rel)
    dtype = autocast_dtype("auto", env.device)
    out: dict[str, float] = {}
    for split in ("val", "test"):
        tokens = load_split(store, data_rel, split)
        if len(tokens) > model.cfg.block_size:
            out |= evaluate_split(model, tokens, meta, split, model.cfg.block_size, env=env, dtype=dtype)
    return out
