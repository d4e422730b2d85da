"""Run a TrainJob on Ray: a multi-worker Ray Train job, or one Ray task for single-worker runs.

Both launchers execute the same `train_loop_per_worker` through Ray Train's `TorchTrainer`:
- `ray_train`: a Train V2 worker group (DDP, gloo on CPU / NCCL on CUDA), fault tolerant through
  FailureConfig; its run storage is runs/<key>/ray in the artifact store.
- `ray_task`: one Ray task (reused worker process, placed by Ray anywhere in the cluster) that runs the
  TorchTrainer in local mode (num_workers=0). A Train V2 worker group costs 12-20 s (2 CPU cores) to
  start and stop per run against ~0 s for a warm Ray task, which dominates CPU-scale studies.
Checkpoints live in the store (runs/<key>/checkpoints) under both, so either resumes the other.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from asymptote.infra.cluster import cluster_has_gpus, ray_ready
from asymptote.infra.progress import push
from asymptote.infra.remotes import remote
from asymptote.infra.tracking import track_run, tune_callbacks
from asymptote.job_spec import TrainJob
from asymptote.store import Store

# Ray Train logs every report (and local mode) at INFO on every worker; our progress display says it better.
# Module level so that it also applies in the worker processes that unpickle these functions.
logging.getLogger("ray.train").setLevel(logging.WARNING)


class RayReporter:
    """Metrics to Ray Train (and through it to Tune) and to the driver's progress display."""

    def __init__(self, job: TrainJob):
        self.job = job

    def __call__(self, record: dict[str, Any]) -> None:
        import ray.train

        ray.train.report({k: v for k, v in record.items() if isinstance(v, (int, float))})
        push(self.job.progress_hub, self.job.key, {**record, "label": self.job.name})


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's per-worker function: rebuild the job, set threads, train."""
    import torch

    from asymptote.dist import DistEnv  # a Ray worker starts here: the driver never imports torch
    from asymptote.job import run_job  # a Ray worker starts here: the training stack, on the worker only

    job = TrainJob.model_validate(config["job"])
    torch.set_num_threads(max(1, int(job.compute.cpus_per_worker)))
    env = DistEnv.detect(use_gpu=config["use_gpu"])
    return run_job(job, env, RayReporter(job))


def resolve_gpu(job: TrainJob) -> bool:
    return cluster_has_gpus() if job.compute.use_gpu == "auto" else bool(job.compute.use_gpu)


def resolve_launcher(job: TrainJob) -> str:
    if job.compute.launcher != "auto":
        return job.compute.launcher
    return "ray_train" if job.compute.num_workers > 1 else "ray_task"


def torch_trainer(
    job: TrainJob,
    loop: Callable[[dict[str, Any]], Any],
    *,
    use_gpu: bool,
    num_workers: int,
    name: str,
    store: Store | None = None,
    loop_config: dict[str, Any] | None = None,
    callbacks: list | None = None,
):
    """The one TorchTrainer builder: `loop` runs the job on each worker (num_workers=0: Train's local
    mode in this process); with a store, Train's checkpoints and failure handling live under the run."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": job.compute.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    scaling = ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources)
    run = RunConfig(name=f"{name}-{job.key}", callbacks=callbacks)
    if store is not None:
        path, fs = ray_storage(store, job.run_rel)
        failures = FailureConfig(max_failures=job.compute.max_failures, controller_failure_limit=3)
        run = RunConfig(
            name=name, storage_path=path, storage_filesystem=fs, callbacks=callbacks, failure_config=failures
        )
    return TorchTrainer(
        loop,
        train_loop_config={"job": job.model_dump(), "use_gpu": use_gpu, **(loop_config or {})},
        scaling_config=scaling,
        run_config=run,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
    )


def ray_storage(store: Store, rel: str):
    """(storage_path, storage_filesystem) for Ray Train / Tune, inside the artifact store."""
    if store.is_local:
        return store.path(rel, "ray"), None
    import pyarrow.fs

    return store.path(rel, "ray"), pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(store.fs))


def _local_mode_fit(job_dict: dict[str, Any], use_gpu: bool) -> dict[str, Any]:
    job = TrainJob.model_validate(job_dict)
    trainer = torch_trainer(job, train_loop_per_worker, use_gpu=use_gpu, num_workers=0, name="train")
    return trainer.fit().return_value


def launch(job: TrainJob, track: bool = True) -> dict[str, Any]:
    """Train the job on the Ray cluster this process is connected to; returns the run summary.
    With `track` (and tracking on), the committed run is logged to MLflow; a Tune trial's launch is
    not, since Ray's MLflow logger of its search logs the trial."""
    ray_ready()
    store = Store(job.store)
    use_gpu = resolve_gpu(job)
    if resolve_launcher(job) == "ray_train":
        torch_trainer(
            job,
            train_loop_per_worker,
            use_gpu=use_gpu,
            num_workers=job.compute.num_workers,
            name="train",
            store=store,
        ).fit()
    else:
        import ray

        task = remote(_local_mode_fit).options(
            num_cpus=job.compute.cpus_per_worker,
            num_gpus=1 if use_gpu else 0,
            max_retries=job.compute.max_failures,
            retry_exceptions=[OSError, TimeoutError],
        )
        ray.get(task.remote(job.model_dump(), use_gpu))
    store.invalidate()
    summary = store.read_json(job.run_rel, "summary.json")
    if track:
        track_run(job, store, summary)  # where tracking is on; bounded, and never raises
    return summary


def tune_experiment(
    store: Store,
    rel: str,
    name: str,
    trainable,
    param_space: dict[str, Any],
    compute,
    *,
    search_alg=None,
    num_samples: int = 1,
    metric: str | None = None,
    mode: str = "min",
    max_concurrent: int | None = None,
    resume: bool = False,
):
    """The one way a Ray Tune experiment is run here: stored in the artifact store (<rel>/ray/<name>),
    at most as many trials at once as runs of `compute`'s shape fit the cluster, resumed where it
    stopped when `resume` and a stored experiment exists. Returns Tune's ResultGrid."""
    from ray import tune

    storage, fs = ray_storage(store, rel)
    path = f"{storage}/{name}"
    if resume and tune.Tuner.can_restore(path, storage_filesystem=fs):
        restored = tune.Tuner.restore(
            path,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            param_space=param_space,
            storage_filesystem=fs,
        )
        return restored.fit()
    tune_config = tune.TuneConfig(
        search_alg=search_alg,
        num_samples=num_samples,
        max_concurrent_trials=max_concurrent or concurrent_runs(compute),
        **({"metric": metric, "mode": mode} if metric else {}),
    )
    run_config = tune.RunConfig(
        name=name, storage_path=storage, storage_filesystem=fs, verbose=0, callbacks=tune_callbacks(store.cfg)
    )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    ).fit()


def concurrent_runs(compute) -> int:
    """How many runs of this compute shape fit the connected cluster at once (a search's trial limit)."""
    import ray

    res = ray.cluster_resources()
    if compute.use_gpu is True or (compute.use_gpu == "auto" and res.get("GPU", 0) > 0):
        return max(1, int(res.get("GPU", 0) // compute.num_workers))
    return max(1, int(res.get("CPU", 1) // (compute.cpus_per_worker * compute.num_workers)))


def _launch_remote(job_dict: dict[str, Any]) -> dict[str, Any]:
    return launch(TrainJob.model_validate(job_dict), track=False)


def launch_from_trial(job: TrainJob) -> dict[str, Any]:
    """`launch` called from inside a Ray Tune trial; returns the run summary.

    Tune places a trial in a placement group that captures its child tasks, and the trial's tiny
    bundle cannot hold the run, so the launch goes through a task scheduled outside that group.
    """
    import ray

    task = remote(_launch_remote, num_cpus=0).options(scheduling_strategy="DEFAULT")
    return ray.get(task.remote(job.model_dump()))
