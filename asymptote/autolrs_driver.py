"""AutoLRS as a training driver: what `TrainJob.driver = {"kind": "autolrs", ...}` runs on every worker.

It runs inside the Ray Train job (or any process that calls asymptote.job.run_job). Every rank runs the
same loop; every decision (a trial's LR, its score, the chosen LR) is taken on rank 0 and its result
broadcast, so DDP replicas never disagree on a learning rate. The controller's state rides in
`trainer.extra` inside every checkpoint, and checkpoints are written after every trial and at every
stage boundary, so a job killed mid-stage resumes at the same stage and trial with the same proposals.
At the end rank 0 commits runs/<key>/autolrs (trace.json: options, every trial, the per-step schedule).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from asymptote.autolrs import AutoLRS, AutoLRSState, LoopIO, drive, search_range
from asymptote.autolrs_config import TRACE, AutoLRSOptions, trace_rel
from asymptote.checkpoint import unwrap
from asymptote.config import ConfigError, explain, stable_hash
from asymptote.dist import DistEnv
from asymptote.model import count_params
from asymptote.store import Store
from asymptote.trainer import Checkpoints, Reporter, Trainer


def autolrs_options(job) -> AutoLRSOptions:
    """The job's driver section validated, with unset fields taken from its train section."""
    try:
        options = AutoLRSOptions.model_validate(job.driver)
    except ValidationError as err:
        raise ConfigError(str(explain(err, AutoLRSOptions)).replace("\n  ", "\n  driver.")) from None
    fill = {"warmup_steps": job.train.warmup_steps, "val_windows": job.train.eval_windows}
    return options.model_copy(update={k: v for k, v in fill.items() if getattr(options, k) is None})


def controller_for(
    trainer: Trainer, options: AutoLRSOptions, lr: float, total: int, tokens_per_step: int
) -> AutoLRS:
    """The resumed controller if the checkpoint holds one, else a fresh one over the search range
    around `lr`, the user's configured learning rate (train.lr)."""
    if "autolrs" in trainer.extra:
        return AutoLRS(options, AutoLRSState.model_validate(trainer.extra["autolrs"]))
    n = count_params(unwrap(trainer.model), non_embedding=True)
    return AutoLRS.start(options, search_range(options, lr, n, total * tokens_per_step), lr)


def rank0_decides(env: DistEnv):
    """A decision runs on rank 0; every other rank adopts rank 0's resulting state."""

    def decide(ctl: AutoLRS, fn) -> None:
        if env.is_main:
            fn()
        if env.distributed:
            ctl.load_state_dict(env.broadcast(ctl.state_dict() if env.is_main else None))

    return decide


def check_ranks_agree(env: DistEnv, state: AutoLRSState) -> None:
    """Fail loudly if any rank trained with another schedule than rank 0 (DDP would silently mix them)."""
    mine = stable_hash(state.lrs)
    if env.broadcast(mine) != mine:
        raise RuntimeError(
            f"rank {env.rank}: AutoLRS learning rates differ from rank 0's; decisions were not shared"
        )


def loop_io(
    trainer: Trainer, job, options: AutoLRSOptions, report: Reporter, checkpoints: Checkpoints
) -> LoopIO:
    env, cfg = trainer.env, job.train
    return LoopIO(
        mean=lambda loss: float(env.mean(loss)),
        decide=rank0_decides(env),
        save=lambda: checkpoints.save(trainer),
        report=report,
        log_every=cfg.log_every,
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every,
        eval_windows=cfg.eval_windows,
        val_windows=options.val_windows,
        tokens_per_step=cfg.batch_size * job.model.block_size,
    )


def commit_trace(
    store: Store, job, options: AutoLRSOptions, state: AutoLRSState, total: int, metrics: list[dict[str, Any]]
) -> None:
    trace = {
        "run": job.key,
        "total_steps": total,
        "tokens_per_step": job.train.batch_size * job.model.block_size,
        "options": options.model_dump(),
        "state": state.model_dump(),
        "metrics": metrics,
    }
    with store.writer(
        trace_rel(job.run_rel), kind="autolrs-trace", meta={"run": job.key, "total_steps": total}
    ) as d:
        (d / TRACE).write_text(json.dumps(trace))


def autolrs_driver(
    trainer: Trainer, job, store: Store, total: int, report: Reporter, checkpoints: Checkpoints
) -> dict[str, Any]:
    """Train `total` steps with the schedule AutoLRS finds on the way (trial steps come on top)."""
    options = autolrs_options(job)
    tokens_per_step = job.train.batch_size * job.model.block_size
    ctl = controller_for(trainer, options, job.train.lr, total, tokens_per_step)
    state = drive(ctl, trainer, total, loop_io(trainer, job, options, report, checkpoints))
    check_ranks_agree(trainer.env, state)
    if trainer.env.is_main:
        commit_trace(store, job, options, state, total, trainer.metrics)
    trainer.env.barrier()
    return trainer.metrics[-1] if trainer.metrics else {}
