"""Which runs a soups study trains: the base, the fine-tunes of the sweep and the basin probe, the
independent members. Pure planning (no Ray, no Prefect, no torch): each is a content-addressed
TrainJob, so the same config always asks for the same runs and none trains twice.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from asymptote.config import ModelConfig
from asymptote.job_spec import TrainJob, make_job
from asymptote.soups_config import SoupStudyConfig, SweepConfig
from asymptote.store import Store


def base_job(config: SoupStudyConfig, store: Store, data_artifact: str, hub: str | None) -> TrainJob:
    """The base trained here, on base.data (or the target) whose artifact is `data_artifact`."""
    b = config.base
    return make_job(
        name=f"{config.name}-base",
        model=b.model,
        data=b.data or config.data,
        train=b.train,
        data_artifact=data_artifact,
        compute=config.compute,
        store=store.cfg,
        progress_hub=hub,
    )


def base_schedule(store: Store, base: str) -> tuple[float | None, int | None]:
    """The base's peak learning rate and optimiser steps, from its run manifest (None if not a run)."""
    meta = store.manifest(base).meta
    return meta.get("config", {}).get("train", {}).get("lr"), meta.get("summary", {}).get("steps")


def finetune_job(
    config: SoupStudyConfig,
    store: Store,
    base: str,
    data_artifact: str,
    hub: str | None,
    name: str,
    hp: dict[str, Any],
) -> TrainJob:
    """One fine-tune of the base with the hyperparameters hp (lr, weight_decay, epochs or max_steps, seed)."""
    lengths = {k: hp[k] for k in ("epochs", "max_steps") if k in hp}
    tr = config.sweep.train.model_copy(
        update={
            "lr": hp["lr"],
            "weight_decay": hp["weight_decay"],
            **lengths,
            "train_seed": hp["seed"],
            "data_seed": hp["seed"],
        }
    )
    return make_job(
        name=name,
        model=ModelConfig.model_validate(store.manifest(base).meta["model"]),
        data=config.data,
        train=tr,
        data_artifact=data_artifact,
        init_from=base,
        compute=config.compute,
        store=store.cfg,
        progress_hub=hub,
    )


def probe_hparams(sweep: SweepConfig, base_lr: float, base_steps: int | None, rung: int) -> list[dict]:
    """The two probe fine-tunes of one rung: lr = base lr / factor**rung, the geometric-mean weight
    decay, the sweep's longest length, two seeds drawn once from sweep.seed + 1."""
    key, lengths = sweep.lengths(base_steps)
    seeds = np.random.RandomState(sweep.seed + 1).randint(0, 2**16, 2).tolist()
    return [
        {
            "lr": base_lr * sweep.basin.factor**-rung,
            "weight_decay": float(np.sqrt(np.prod(sweep.weight_decay))),
            key: max(lengths),
            "seed": sd,
        }
        for sd in seeds
    ]


def choose_rung(checks: Sequence[dict]) -> int:
    """The first rung (largest learning rate, probed first) whose probe pair soups; else the last."""
    return next((i for i, c in enumerate(checks) if c["soups"]), len(checks) - 1)


def member_shape(config: SoupStudyConfig, store: Store, given: list[str]) -> ModelConfig:
    """The independent members' shape is the base's: base.model when it is trained here, else that of
    base.run or of the first given ingredient."""
    if config.base.run:
        shape_of = store.model_ref(config.base.run, "base.run")
    elif given:
        shape_of = given[0]
    else:
        return config.base.model
    return ModelConfig.model_validate(store.manifest(shape_of).meta["model"])


def member_jobs(
    config: SoupStudyConfig, store: Store, data_artifact: str, shape: ModelConfig, hub: str | None
) -> list[TrainJob]:
    """Members trained from scratch on the target: member i adds i to the train and data seeds."""
    t = config.independent.train
    return [
        make_job(
            name=f"{config.name}-member-{i}",
            model=shape,
            data=config.data,
            train=t.model_copy(update={"train_seed": t.train_seed + i, "data_seed": t.data_seed + i}),
            data_artifact=data_artifact,
            compute=config.compute,
            store=store.cfg,
            progress_hub=hub,
        )
        for i in range(config.independent.members)
    ]
