"""Prefect tasks and Ray launches for soups: base, fine-tune sweep and basin probe, independent members,
cooking soups and merges, aligned averages.

- Sweep: hyperparameters (lr, weight decay, epochs, seed) are drawn from a Ray Tune search space with
  a seeded generator, so the same config always asks for the same runs; every run is a TrainJob
  (asymptote.soups_plan) whose init_from is the base run, hence content-addressed and never trained
  twice. The runs execute as a Ray Tune experiment (engine "tune", one trial per run) or as cached
  Prefect train tasks (engine "tasks", no Tune start-up cost); both ask for the same runs/<key>.
- Cooking, the basin probe's segments and the independent averages are cached Prefect tasks, each
  starting one Ray task that runs asymptote.soups_worker: torch loads there, never on the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task

from asymptote.config import key_dict
from asymptote.infra.cluster import cluster_has_gpus, ray_ready
from asymptote.infra.launch import launch_from_trial, tune_experiment
from asymptote.infra.remotes import remote
from asymptote.job_spec import TrainJob
from asymptote.refs import DataRef, RunRef
from asymptote.soups_config import (
    Cooking,
    FineTune,
    Kitchen,
    Rung,
    Segment,
    SoupEntry,
    SoupOptions,
    SoupStudyConfig,
    SweepConfig,
)
from asymptote.soups_plan import (
    base_job,
    base_schedule,
    choose_rung,
    finetune_job,
    member_jobs,
    member_shape,
    probe_hparams,
)
from asymptote.store import Store, layout
from asymptote.tasks.caching import cached
from asymptote.tasks.pretrain import prepare_data, run_ref, submit_train
from asymptote.versioning import step_key

# ----------------------------------------------------------------------------- the sweep


def sweep_space(sweep: SweepConfig, lr: list[float], lengths: tuple[str, list[float]]) -> dict[str, Any]:
    """The sweep's Ray Tune search space: lr and weight decay log-uniform, length and seed drawn."""
    from ray import tune

    wd = sweep.weight_decay
    return {
        "lr": tune.loguniform(lr[0], lr[1]) if lr[0] < lr[1] else lr[0],
        "weight_decay": tune.loguniform(wd[0], wd[1]) if wd[0] < wd[1] else wd[0],
        lengths[0]: tune.choice(lengths[1]),
        "seed": tune.randint(0, 2**16),
    }


def sample_trials(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """n draws from a Ray Tune search space, the same for the same seed."""
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.RandomState(seed)
    return [cfg for _ in range(n) for _, cfg in generate_variants(space, random_state=rng)]


def _sweep_trial(config: dict[str, Any]) -> None:
    """A Tune function trainable: train (or find) the trial's run and report its summary."""
    from ray import tune

    job = TrainJob.model_validate(config["job"])
    summary = launch_from_trial(job)
    tune.report({"val_loss": float(summary["val_loss"]), "run": job.run_rel})


@task(name="soup-sweep", retries=1, retry_delay_seconds=5)
def tune_sweep_task(jobs: list[TrainJob], key: str) -> list[RunRef]:
    """Every job as one trial of a Ray Tune experiment stored under sweeps/<key>/tune."""
    from ray import tune

    ray_ready()
    store = Store(jobs[0].store)
    trainable = tune.with_resources(_sweep_trial, {"cpu": 0.01})  # the trial waits; its run holds the CPUs
    # Tune writes each trial's config into the store: the Redis URL (a password, perhaps) stays out;
    # a trial never takes a lock
    space = {"job": tune.grid_search([j.model_dump(exclude={"store": {"redis_url"}}) for j in jobs])}
    grid = tune_experiment(store, layout("sweep", key=key), "tune", trainable, space, jobs[0].compute)
    failed = [r.error for r in grid if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} fine-tunes failed; first error: {failed[0]}")
    store.invalidate()
    return [run_ref(store, j.key, j.name, store.read_json(j.run_rel, "summary.json")) for j in jobs]


def run_sweep(jobs: list[TrainJob], engine: str, refresh: bool = False) -> list[RunRef]:
    """Train (or reuse) every fine-tune: a Ray Tune experiment or concurrent cached train tasks."""
    if engine == "tasks":
        futures = [submit_train(j, refresh) for j in jobs]
        return [f.result() for f in futures]
    if refresh:
        for j in jobs:
            Store(j.store).rm(j.run_rel)
    key = step_key(__name__, runs=[j.key for j in jobs], what="soup-sweep")
    return cached(tune_sweep_task, Store(jobs[0].store), refresh)(jobs, key=key)


def probe_basin(
    config: SoupStudyConfig, store: Store, base: str, target: DataRef, hub, refresh: bool, gpu
) -> tuple[list[Rung], list[FineTune]]:
    """Descend the learning-rate ladder from the base's peak until a probe pair soups (held-out only)."""
    base_lr, base_steps = base_schedule(store, base)
    if base_lr is None:
        raise ValueError(
            f"sweep.basin needs a base run whose config records its learning rate; {base} has none"
        )
    rungs, pairs = [], []
    for i in range(config.sweep.basin.rungs):
        hps = probe_hparams(config.sweep, base_lr, base_steps, i)
        jobs = [
            finetune_job(config, store, base, target.rel, hub, f"{config.name}-probe-{i}-{j}", hp)
            for j, hp in enumerate(hps)
        ]
        runs = [f.result() for f in [submit_train(j, refresh) for j in jobs]]
        seg = probe_segment(store, runs[0].rel, runs[1].rel, target.rel, config.soups, gpu, refresh)
        frac = config.sweep.basin.factor**-i
        rungs.append(Rung(lr=base_lr * frac, lr_fraction=frac, runs=[r.rel for r in runs], segment=seg))
        pairs.append([FineTune(run=r, hparams=hp) for r, hp in zip(runs, hps, strict=True)])
        if seg.check["soups"]:
            break
    return rungs, pairs[choose_rung([r.segment.check for r in rungs])]


def finetune_sweep(
    config: SoupStudyConfig, store: Store, base: str, target: DataRef, hub, refresh: bool, gpu=False
) -> tuple[list[FineTune], list[Rung]]:
    """The fine-tunes: draws from the configured space, or the basin probe's pair plus draws around it."""
    s = config.sweep
    lengths = s.lengths(base_schedule(store, base)[1])
    rungs, pair, lr = [], [], s.lr
    if s.basin.rungs:
        rungs, pair = probe_basin(config, store, base, target, hub, refresh, gpu)
        lr = [rungs[-1].lr / s.basin.lr_span, rungs[-1].lr]
    draws = sample_trials(sweep_space(s, lr, lengths), s.n_models - len(pair), s.seed)
    jobs = [
        finetune_job(config, store, base, target.rel, hub, f"{config.name}-ft-{i}", hp)
        for i, hp in enumerate(draws)
    ]
    runs = run_sweep(jobs, s.engine, refresh) if jobs else []
    return pair + [FineTune(run=r, hparams=hp) for r, hp in zip(runs, draws, strict=True)], rungs


# ----------------------------------------------------------------------------- the base and the members


def submit_base(config: SoupStudyConfig, store: Store, target: DataRef, hub: str | None, refresh: bool):
    """(the base, its corpus): base.run as is (corpus unknown), or a run trained here (submitted, so
    members train beside it) with the data artifact it was trained on."""
    if config.base.run:
        return store.model_ref(config.base.run, "base.run"), None
    corpus = target if config.base.data is None else prepare_data(config.base.data, store)
    return submit_train(base_job(config, store, corpus.rel, hub), refresh), corpus


def start_members(
    config: SoupStudyConfig, store: Store, target: DataRef, given: list[str], hub: str | None, refresh: bool
) -> list:
    """Submit the independent members (futures), so they train while the base and the fine-tunes do.
    Members given as runs (independent.runs) are returned as they are."""
    if config.independent.runs:
        return [store.model_ref(r, f"independent.runs[{i}]") for i, r in enumerate(config.independent.runs)]
    shape = member_shape(config, store, given)
    return [submit_train(j, refresh) for j in member_jobs(config, store, target.rel, shape, hub)]


def averages(
    config: SoupStudyConfig, store: Store, futures: list, target: DataRef, gpu, refresh: bool
) -> list[SoupEntry]:
    """The members (once trained), their naive and aligned averages and their ensemble."""
    if not futures:
        return []
    members = [f if isinstance(f, str) else f.result().rel for f in futures]
    return independent_averages(store, members, target.rel, config.soups, gpu, refresh)


# ----------------------------------------------------------------------------- steps on a Ray worker


def resolve_gpu(use_gpu: bool | str) -> bool:
    """compute.use_gpu resolved where the work runs: "auto" asks the cluster (so a cached step never
    starts Ray to ask)."""
    return cluster_has_gpus() if use_gpu == "auto" else bool(use_gpu)


def _on_worker(step: str, use_gpu: bool, *args: Any) -> Any:
    """A Ray task's body: asymptote.soups_worker.<step>(*args, device) on the CPUs (or GPU) it holds."""
    import ray

    from asymptote import soups_worker  # torch loads in the Ray worker, never on the driver

    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    return getattr(soups_worker, step)(*args, soups_worker.device(use_gpu, cpus))


def _run_on_worker(step: str, use_gpu: bool | str, *args: Any) -> Any:
    """One Ray task running soups_worker.<step>: one CPU, and one GPU when compute.use_gpu resolves so."""
    ray_ready()
    use_gpu = resolve_gpu(use_gpu)
    import ray

    fn = remote(_on_worker).options(num_cpus=1, num_gpus=1 if use_gpu else 0)
    return ray.get(fn.remote(step, use_gpu, *args))


def kitchen_key(store: Store, kitchen: Kitchen) -> str:
    """What can change the soups: the ingredients and base (paths and digests), the data, the options
    (each merge's with its defaults filled in) and the code."""
    digests = {
        rel: store.manifest(rel).digest
        for rel in [*kitchen.ingredients, *([kitchen.base] if kitchen.base else [])]
    }
    merges = key_dict(kitchen.merges) | {
        "options": {m: kitchen.merges.for_method(m) for m in kitchen.merges.methods}
    }
    return step_key(
        __name__,
        ingredients=kitchen.ingredients,
        base=kitchen.base,
        digests=digests,
        data=kitchen.data,
        ood_data=kitchen.ood_data,
        soups=key_dict(kitchen.soups),
        merges=merges,
    )


@task(name="cook-soups", retries=1, retry_delay_seconds=5)
def cook_task(store: Store, kitchen: Kitchen, use_gpu: bool | str, key: str) -> Cooking:
    return Cooking.model_validate(_run_on_worker("cook", use_gpu, store, kitchen, layout("soup", key=key)))


def cook(store: Store, kitchen: Kitchen, use_gpu: bool | str = False, refresh: bool = False) -> Cooking:
    """Score the ingredients and make every soup and merge; cached by the kitchen's key."""
    if kitchen.merges.methods and not kitchen.base:
        raise ValueError(
            "merges are relative to a base: set base.run (the checkpoint the ingredients were "
            "fine-tuned from) or merges.methods=[]"
        )
    return cached(cook_task, store, refresh)(store, kitchen, use_gpu, key=kitchen_key(store, kitchen))


@task(name="basin-probe", retries=1, retry_delay_seconds=5)
def probe_task(
    store: Store, a: str, b: str, data: str, options: SoupOptions, use_gpu: bool | str, key: str
) -> Segment:
    return Segment.model_validate(_run_on_worker("probe", use_gpu, store, a, b, data, options))


def probe_segment(
    store: Store,
    a: str,
    b: str,
    data: str,
    options: SoupOptions,
    use_gpu: bool | str = False,
    refresh: bool = False,
) -> Segment:
    """Held-out loss along the segment between two fine-tunes (and its basin_check); cached."""
    key = step_key(
        __name__,
        ends=[a, b],
        digests=[store.manifest(r).digest for r in (a, b)],
        data=data,
        split=options.split_meta(),
        eval_windows=options.eval_windows,
        points=options.curve_points,
        what="basin-probe",
    )
    return cached(probe_task, store, refresh)(store, a, b, data, options, use_gpu, key=key)


@task(name="independent-averages", retries=1, retry_delay_seconds=5)
def independent_task(
    store: Store, members: list[str], data: str, options: SoupOptions, use_gpu: bool | str, key: str
) -> list[SoupEntry]:
    out = layout("soup", key=key)
    rows = _run_on_worker("independent", use_gpu, store, members, data, options, out)
    return [SoupEntry.model_validate(r) for r in rows]


def independent_averages(
    store: Store,
    members: list[str],
    data: str,
    options: SoupOptions,
    use_gpu: bool | str = False,
    refresh: bool = False,
) -> list[SoupEntry]:
    """Members' losses, their naive and aligned averages, and their ensemble; cached.

    Scored on held-out and on the reported split, by the rule of `options` (its soups play no part)."""
    key = step_key(
        __name__,
        members=members,
        digests=[store.manifest(m).digest for m in members],
        data=data,
        split=options.split_meta(),
        eval_windows=options.eval_windows,
        what="independent",
    )
    return cached(independent_task, store, refresh)(store, members, data, options, use_gpu, key=key)
