"""Ray Tune over training runs: any TrainJob as a Tune trial, and an Optuna search over the pretrain config.

Train V2 pattern: a Tune trial is a function that builds a Ray Train `TorchTrainer` for one TrainJob
and fits it. `job_trial(build)` turns any `params -> TrainJob` function into such a trial, so every
training entry point (pretraining, a distillation student, an AutoLRS run: all are TrainJobs) can
be tuned. Workers report each evaluation; `TuneReportCallback` carries those reports to Tune (for a
single-worker job the trainer runs in Ray Train's local mode inside the trial, which reports to Tune
directly); the workers report the run's final summary last, by the same way.

`tune_pretrain` searches the pretrain config with Optuna (TPE). Every trial is a normal run
(runs/<key>, cached by content: a repeated search trains nothing twice), the Tune experiment lives in
the store (tune/<key>/ray, on S3 when the store is), and the search commits tune/<key> with the
trials table and the best config.
"""

from __future__ import annotations

import json
import math
import shutil
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, Field, model_validator

from asymptote.config import PretrainConfig, Section, key_dict, volatile
from asymptote.dist import DistEnv
from asymptote.infra.cluster import ray_session
from asymptote.infra.launch import ray_storage, resolve_gpu, resolve_launcher, torch_trainer, tune_experiment
from asymptote.infra.progress import push
from asymptote.job import TrainJob, make_job, run_job
from asymptote.recipes import resolve
from asymptote.shards import prepare_dataset
from asymptote.store import Store, layout
from asymptote.versioning import step_key

METRIC = "val_loss"


# ----------------------------------------------------------------------------- any TrainJob as a trial


class TuneReporter:
    """Per-worker reporter: evaluation records only (Tune needs the metric in every result), then
    the run's final row. Every row of a trial goes one way: a worker group's through Ray Train and
    TuneReportCallback, local mode's by tune.report. The trial itself reports nothing: Tune's session
    hands the callback's rows on from the trial's own thread, and a row the trial reported while one
    of those was still queued could take its turn and hang the trial."""

    def __init__(self, job: TrainJob, local: bool):
        self.job, self.local = job, local

    def __call__(self, record: dict[str, Any]) -> None:
        push(self.job.progress_hub, self.job.key, {**record, "label": self.job.name})
        if record.get(METRIC) is None:
            return
        self._send({k: v for k, v in record.items() if isinstance(v, (int, float))})

    def final(self, summary: dict[str, Any]) -> None:
        """The run's summary as the trial's last row (every rank sends it: a report is collective)."""
        numbers = {
            k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        self._send({**numbers, METRIC: float(summary[METRIC]), "run_key": self.job.key, "final": 1})

    def _send(self, metrics: dict[str, Any]) -> None:
        if self.local:  # local mode runs inside the trial: no Train controller, no callback
            from ray import tune

            tune.report(metrics)
        else:
            import ray.train

            ray.train.report(metrics)


def tune_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's per-worker function for a trial: rebuild the job, train, report evaluations and
    the final summary (a cached run reports its summary only)."""
    job = TrainJob.model_validate(config["job"])
    torch.set_num_threads(max(1, int(job.compute.cpus_per_worker)))
    env = DistEnv.detect(use_gpu=config["use_gpu"])
    reporter = TuneReporter(job, local=config["local"])
    summary = run_job(job, env, reporter)
    reporter.final(summary)
    return summary


def trial_trainer(job: TrainJob):
    """The TorchTrainer for one trial: a worker group (launcher ray_train) whose reports reach Tune
    through TuneReportCallback, or Ray Train's local mode inside the trial (launcher ray_task)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu, local = resolve_gpu(job), resolve_launcher(job) == "ray_task"
    return torch_trainer(
        job,
        tune_loop_per_worker,
        use_gpu=use_gpu,
        num_workers=0 if local else job.compute.num_workers,
        name="tune-trial",
        store=Store(job.store),
        loop_config={"local": local},
        callbacks=[TuneReportCallback()],
    )


def _run_trial(params: dict[str, Any], build: Callable[[dict[str, Any]], TrainJob]) -> None:
    trial_trainer(build(params)).fit()  # the workers report every row, the final one included


def job_trial(build: Callable[[dict[str, Any]], TrainJob], job_resources: dict[str, float] | None = None):
    """A Tune trainable: params -> build(params) -> a TrainJob trained by `trial_trainer`.

    `job_resources` is what one trial reserves: the trainer's CPUs in local mode; for a worker group
    the trial itself only waits, so it reserves almost nothing and the workers reserve the rest.
    """
    from ray import tune

    return tune.with_resources(partial(_run_trial, build=build), job_resources or {"CPU": 1})


def trial_resources(job: TrainJob) -> dict[str, float]:
    if resolve_launcher(job) == "ray_task":
        return {"CPU": job.compute.cpus_per_worker, **({"GPU": 1} if resolve_gpu(job) else {})}
    return {"CPU": 0.01}


# ----------------------------------------------------------------------------- the pretrain search


class SearchDim(Section):
    """One searched field: a float range (optionally log-scaled or integer) or a list of choices."""

    low: float | None = None
    """Lower bound of the range."""
    high: float | None = None
    """Upper bound of the range."""
    log: bool = False
    """Sample the range on a log scale (learning rates, weight decays)."""
    integer: bool = False
    """Sample whole numbers in [low, high] (layers, batch sizes)."""
    choices: list[Any] | None = None
    """Sample one of these values instead of a range."""

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SearchDim":
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give either a non-empty `choices` list or `low` and `high`, not both")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"low={self.low}, high={self.high}: a range needs low < high")
        if self.log and self.low <= 0:
            raise ValueError(f"low={self.low}: a log range needs low > 0")
        return self

    def domain(self):
        from ray import tune

        if self.choices is not None:
            return tune.choice(self.choices)
        if self.integer:
            return (tune.lograndint if self.log else tune.randint)(int(self.low), int(self.high) + 1)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def example(self) -> Any:
        return self.choices[0] if self.choices is not None else (int(self.low) if self.integer else self.low)


class PretrainSearchConfig(Section):
    """An Optuna search over fields of a pretrain config; each trial is one pretrain run."""

    name: str = volatile("tune-pretrain")
    """Label of the search in the store and in Tune."""
    base: PretrainConfig = Field(default_factory=PretrainConfig)
    """The pretrain config every trial starts from (its store and compute apply to the search)."""
    space: dict[str, SearchDim] = Field(
        default_factory=lambda: {"train.lr": SearchDim(low=1e-4, high=1e-2, log=True)}
    )
    """Searched fields as dotted paths into the pretrain config, e.g. train.lr, train.weight_decay."""
    num_samples: int = Field(8, ge=1)
    """Trials to run."""
    seed: int = 0
    """Seed of the Optuna sampler (same seed, same proposals)."""
    mode: Literal["min"] = "min"
    """Minimise the final validation loss."""
    max_concurrent: int | None = volatile(None, ge=1)
    """Trials at a time (None: as many as the cluster's resources allow)."""

    @model_validator(mode="after")
    def _known_fields(self) -> "PretrainSearchConfig":
        for path, dim in self.space.items():  # every path must set a real field to a valid value
            trial_config(self.base, {path: dim.example()})
        return self

    @property
    def key(self) -> str:
        space = {k: v.model_dump() for k, v in self.space.items()}
        return step_key(__name__, base=key_dict(self.base), space=space, n=self.num_samples, seed=self.seed)


class TrialResult(BaseModel):
    params: dict[str, Any]
    val_loss: float
    run_uri: str


class TuneResult(BaseModel):
    """What `tune_pretrain` returns: the best config, every trial, and where the search lives."""

    best_params: dict[str, Any]
    best_val_loss: float
    best_config: PretrainConfig
    best_run_uri: str
    trials: list[TrialResult]
    results_uri: str
    """The committed artifact tune/<key> (results.json)."""
    experiment_uri: str
    """Ray Tune's experiment folder (restorable with tune.Tuner.restore)."""


def trial_config(base: PretrainConfig, params: dict[str, Any]) -> PretrainConfig:
    """The base config with the trial's values set at their dotted paths (validated)."""
    return resolve(
        PretrainConfig, overrides=[f"{k}={json.dumps(v)}" for k, v in params.items()], base=base.model_dump()
    )


def pretrain_job(base: PretrainConfig, data_rel: str, params: dict[str, Any]) -> TrainJob:
    cfg = trial_config(base, params)
    return make_job(
        name=cfg.name,
        model=cfg.model,
        data=cfg.data,
        train=cfg.train,
        data_artifact=data_rel,
        compute=cfg.compute,
        store=cfg.store,
    )


def tune_pretrain(config: PretrainSearchConfig) -> TuneResult:
    """Run the search on the Ray cluster of config.base.compute (or a local Ray) and commit its results."""
    from ray.tune.search.optuna import OptunaSearch

    store, rel = Store(config.base.store), layout("tune", key=config.key)
    with ray_session(config.base.compute.ray_address):
        build = partial(pretrain_job, config.base, prepare_dataset(config.base.data, store, store.options))
        grid = tune_experiment(
            store,
            rel,
            config.name,
            job_trial(build, trial_resources(build({}))),
            {k: v.domain() for k, v in config.space.items()},
            config.base.compute,
            search_alg=OptunaSearch(metric=METRIC, mode=config.mode, seed=config.seed),
            num_samples=config.num_samples,
            max_concurrent=config.max_concurrent,
        )
        trials = [_trial(store, r) for r in grid if r.metrics and r.metrics.get("final")]
    if not trials:
        errors = "; ".join(str(r.error) for r in grid if r.error)
        raise RuntimeError(f"no trial of the search {config.name!r} finished: {errors or 'no results'}")
    return _commit(store, rel, config, trials, f"{ray_storage(store, rel)[0]}/{config.name}")


def _trial(store: Store, result) -> TrialResult:
    return TrialResult(
        params=dict(result.config),
        val_loss=float(result.metrics[METRIC]),
        run_uri=store.uri("runs", result.metrics["run_key"]),
    )


def _commit(
    store: Store, rel: str, config: PretrainSearchConfig, trials: list[TrialResult], experiment: str
) -> TuneResult:
    best = min(trials, key=lambda t: t.val_loss if math.isfinite(t.val_loss) else math.inf)
    result = TuneResult(
        best_params=best.params,
        best_val_loss=best.val_loss,
        best_config=trial_config(config.base, best.params),
        best_run_uri=best.run_uri,
        trials=trials,
        results_uri=store.uri(rel, "results.json"),
        experiment_uri=experiment if store.is_local else f"{store.protocol}://{experiment}",
    )
    meta = {"name": config.name, "best_val_loss": best.val_loss, "best_params": best.params}
    with store.writer(rel, kind="tune", meta=meta) as folder:
        (folder / "results.json").write_text(result.model_dump_json(indent=1))
        _copy_experiment(store, experiment, folder / "ray" / config.name)  # so the manifest covers it
    return result


def _copy_experiment(store: Store, experiment: str, dest: Path) -> None:
    """Tune's experiment folder (small: params, progress, state) into the artifact being committed."""
    if store.is_local:
        shutil.copytree(experiment, dest)
    else:
        store.fs.get(experiment, str(dest), recursive=True)
