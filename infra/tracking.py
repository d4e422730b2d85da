"""MLflow tracking of training runs: opt-in, logged by the driver, never on the training path.

Where it runs: the process that launched the run (`infra.launch.launch`, in the flow's train task)
logs each run once it is committed, from the run's own `metrics.jsonl` in the store. That file holds
every report step the worker made, so MLflow gets the whole history with step = the optimiser step,
and the training loop gains nothing: no client, thread or socket on a worker, no extra traffic
between worker and driver, and no per-step call that a slow server could stall. The price is that
curves reach MLflow when a run ends, not while it trains (the progress display shows live figures
meanwhile). Runs nest as MLflow expects: a flow is a parent run (found or created by its Prefect
flow-run id), each run it trains a child. Ray Tune searches log their trials through Ray's own
`MLflowLoggerCallback` (`tune_callbacks`), nested under the flow's run the same way.

Tracking must never fail or slow a run: every call is bounded by `TrackingConfig.timeout_s` with one
immediate retry, an error is logged once per server and process as a warning, and a server that failed
is skipped for a minute. Every param and tag passes through `asymptote.redact` first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from asymptote.config import Section, StoreConfig, key_dict, local_tracking_db, tracking_uri
from asymptote.job_spec import TrainJob, job_code_version
from asymptote.redact import redact, redact_text
from asymptote.store import Store

log = logging.getLogger(__name__)

HISTORY = ("train_loss", "val_loss", "lr", "tok_per_s")
"""Metrics logged at every report step of a run (step = optimiser step)."""
JOB_VOLATILE = ("key", "name", "compute", "store", "progress_hub", "keep_checkpoints")
RETRY_AFTER_S = 60.0
RUN_KEY_TAG = "asymptote.run_key"
FLOW_RUN_TAG = "asymptote.flow_run_id"

_lock = threading.Lock()
_down_until: dict[str, float] = {}  # server -> time before which it is not tried again
_warned: set[str] = set()
_experiments: dict[tuple[str, str], str] = {}
_parents: dict[tuple[str, str], str] = {}  # (server, flow run id) -> MLflow run id


def client(cfg: StoreConfig):
    """An MlflowClient whose calls fail fast: each bounded by tracking.timeout_s, with one retry.

    The retry is for a pooled keep-alive connection that the server closed as the request went out:
    the request then fails with a reset although the server is up, and without a retry tracking would
    be skipped for a minute. urllib3 makes a first retry without backoff, so a server that is down
    still fails at once."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(cfg.tracking.timeout_s))))
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per run, amid progress
    from mlflow.tracking import MlflowClient  # ~1 s of imports: only where a run is tracked

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database set-up lines, amid the progress

    return MlflowClient(tracking_uri=tracking_uri(cfg))


def guarded(cfg: StoreConfig, what: str, fn, *args) -> Any:
    """fn(*args), or None if tracking is off, its server failed a moment ago, or the call fails."""
    uri = tracking_uri(cfg)
    if uri is None or _down_until.get(uri, 0.0) > time.time():
        return None
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - tracking never breaks a run
        _down_until[uri] = time.time() + RETRY_AFTER_S
        if uri not in _warned:
            _warned.add(uri)
            log.warning(
                "MLflow tracking at %s failed (%s: %s); training goes on untracked",
                redact_text(uri),
                what,
                redact_text(str(err)),
            )
        return None


# ----------------------------------------------------------------------------- what a run logs


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested dict as MLflow params: dotted keys, string values (MLflow keeps up to 6000 chars)."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: (value if isinstance(value, str) else json.dumps(value, default=str))[:6000]}


def run_params(job: TrainJob) -> dict[str, str]:
    """The job's config without volatile fields (what its key hashes), its key and code version."""
    body = {k: key_dict(v) if isinstance(v, Section) else v for k, v in job if k not in JOB_VOLATILE}
    return flatten(redact({**body, "run_key": job.key, "code_version": job_code_version(job)}))


def role(name: str) -> str:
    """A run's part in its study, read from the end of the name its method's plan gives it."""
    for pattern, label in (
        (r"member[- ](\d+)$", "member {}"),
        (r"student (\S+)$", "student {}"),
        (r" seed (\d+)$", "seed {}"),
        (r" lr=\S+ wd=\S+ ep=\S+$", "search point"),
        (r"(?:^|[- ])(base|regularized|soup|ingredient|trial)$", "{}"),
    ):
        if m := re.search(pattern, name):
            return label.format(*m.groups())
    return "single"


def current_flow():
    """Prefect's view of the flow run this process is in (its fields are None outside one). Imported
    here, not at the top: Ray workers import this module through infra.launch and must not load Prefect."""
    from prefect.runtime import flow_run

    return flow_run


def run_tags(job: TrainJob, parent: str | None) -> dict[str, str]:
    flow_run = current_flow()
    tags = {
        "mlflow.runName": job.name,
        "method": flow_run.flow_name or "run",
        "study": flow_run.name or job.name,
        "role": role(job.name),
        "seed": str(job.train.train_seed),
        RUN_KEY_TAG: job.key,
        **({"mlflow.parentRunId": parent} if parent else {}),
    }
    return redact(tags)


def history(records: list[dict[str, Any]], started_ms: int) -> list:
    from mlflow.entities import Metric

    return [
        Metric(name, float(rec[name]), started_ms + int(1000 * rec.get("elapsed_s", 0.0)), int(rec["step"]))
        for rec in records
        for name in HISTORY
        if isinstance(rec.get(name), int | float)
    ]


# ----------------------------------------------------------------------------- logging


def experiment_id(mlflow, cfg: StoreConfig) -> str:
    """The experiment's id, created on first use (a local store keeps its artifacts beside its db)."""
    memo = (tracking_uri(cfg), cfg.tracking.experiment)
    if memo not in _experiments:
        found = mlflow.get_experiment_by_name(cfg.tracking.experiment)
        if found is None:
            where = local_tracking_db(cfg).parent / "artifacts" if not cfg.tracking.uri else None
            try:
                found_id = mlflow.create_experiment(
                    cfg.tracking.experiment, artifact_location=where.as_uri() if where else None
                )
            except Exception:  # created meanwhile by another process
                found_id = mlflow.get_experiment_by_name(cfg.tracking.experiment).experiment_id
        else:
            found_id = found.experiment_id
        _experiments[memo] = found_id
    return _experiments[memo]


def flow_parent(mlflow, cfg: StoreConfig, experiment: str) -> str | None:
    """The MLflow run of the Prefect flow run this process is in (found or created), or None outside one."""
    flow_id = current_flow().id
    if cfg.tracking.parent_run_id or not flow_id:
        return cfg.tracking.parent_run_id
    memo = (tracking_uri(cfg), flow_id)
    with _lock:
        if memo not in _parents:
            found = mlflow.search_runs([experiment], f"tags.`{FLOW_RUN_TAG}` = '{flow_id}'", max_results=1)
            _parents[memo] = found[0].info.run_id if found else create_parent(mlflow, experiment, flow_id)
    return _parents[memo]


def create_parent(mlflow, experiment: str, flow_id: str) -> str:
    flow_run = current_flow()
    tags = {
        "mlflow.runName": f"{flow_run.flow_name} {flow_run.name}",
        "method": flow_run.flow_name,
        "study": flow_run.name,
        "role": "study",
        FLOW_RUN_TAG: flow_id,
        "asymptote.root_flow_run_id": str(flow_run.root_flow_run_id or flow_id),
    }
    run = mlflow.create_run(experiment, tags=redact(tags))
    config = next((v for v in flow_run.parameters.values() if isinstance(v, BaseModel)), None)
    if config is not None:
        log_params(mlflow, run.info.run_id, flatten(redact(key_dict(config))))
    return run.info.run_id


def log_params(mlflow, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        mlflow.log_batch(run_id, params=items[i : i + 100])


def log_run(cfg: StoreConfig, job: TrainJob, store: Store, summary: dict[str, Any]) -> str:
    """One committed training run as an MLflow run; returns its id."""
    from mlflow.entities import RunStatus, RunTag

    mlflow = client(cfg)
    experiment = experiment_id(mlflow, cfg)
    parent = guarded(cfg, "parent run", flow_parent, mlflow, cfg, experiment)
    end_ms = int(time.time() * 1000)
    started_ms = end_ms - int(1000 * float(summary.get("wall_s") or 0.0))
    run = mlflow.create_run(experiment, start_time=started_ms, tags=run_tags(job, parent))
    run_id = run.info.run_id
    log_params(mlflow, run_id, run_params(job))
    lines = store.get_bytes(f"{job.run_rel}/metrics.jsonl").decode().splitlines()
    metrics = history([json.loads(line) for line in lines if line.strip()], started_ms)
    for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        mlflow.log_batch(run_id, metrics=metrics[i : i + 1000])
    links = {"run_uri": store.uri(job.run_rel), "weights_uri": store.uri(job.run_rel, "model.safetensors")}
    mlflow.log_batch(run_id, tags=[RunTag(f"asymptote.{k}", redact_text(v)) for k, v in links.items()])
    mlflow.log_dict(run_id, redact({**links, "summary": summary}), "links.json")
    log_plot(mlflow, run_id, store, job.run_rel)
    mlflow.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED), end_time=end_ms)
    if parent:
        mlflow.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED), end_time=end_ms)
    return run_id


def log_plot(mlflow, run_id: str, store: Store, run_rel: str) -> None:
    """The run's loss curve as an image artifact (a few kB; the weights stay in the store, linked)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loss.png"
        path.write_bytes(store.get_bytes(f"{run_rel}/loss.png"))
        mlflow.log_artifact(run_id, str(path))


def track_run(job: TrainJob, store: Store, summary: dict[str, Any]) -> str | None:
    """Log a committed run where tracking is on; its MLflow run id, or None (off, or the server failed)."""
    return guarded(job.store, "log run", log_run, job.store, job, store, summary)


def log_evaluation(cfg: StoreConfig, run_key: str, metrics: dict[str, float]) -> None:
    """A run's final test figures (test loss, bits per token and per byte) onto its MLflow run, found by
    its run key. Validation figures stay out: the run's own val_loss history already ends with them."""
    final = {k: float(v) for k, v in metrics.items() if k.startswith("test_")}

    def log(mlflow) -> None:
        experiment = experiment_id(mlflow, cfg)
        found = mlflow.search_runs([experiment], f"tags.`{RUN_KEY_TAG}` = '{run_key}'", max_results=1)
        for run in found:
            for name, value in final.items():
                mlflow.log_metric(run.info.run_id, name, value)

    guarded(cfg, "log evaluation", lambda: log(client(cfg)))


def log_models(cfg: StoreConfig, store: Store, models: list[dict[str, Any]]) -> None:
    """Models a flow made without training them (soups, merges, averages, ensembles) as MLflow runs
    under the flow's run: each {"name", "role", "metrics": {name: value}, "rel": its store path or
    None}. Logged from the flow once their figures exist; nothing here waits on a server that is down."""

    def log(mlflow) -> None:
        from mlflow.entities import Metric, RunStatus

        experiment = experiment_id(mlflow, cfg)
        parent = flow_parent(mlflow, cfg, experiment)
        flow_run = current_flow()
        now = int(time.time() * 1000)
        for m in models:
            tags = {
                "mlflow.runName": m["name"],
                "method": flow_run.flow_name or "run",
                "study": flow_run.name or m["name"],
                "role": m["role"],
                **({"mlflow.parentRunId": parent} if parent else {}),
                **({"asymptote.run_uri": store.uri(m["rel"])} if m.get("rel") else {}),
            }
            run_id = mlflow.create_run(experiment, start_time=now, tags=redact(tags)).info.run_id
            values = [Metric(k, float(v), now, 0) for k, v in m["metrics"].items() if v is not None]
            mlflow.log_batch(run_id, metrics=values)
            mlflow.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED), end_time=now)

    if models:
        guarded(cfg, "log models", lambda: log(client(cfg)))


def tune_callbacks(cfg: StoreConfig) -> list:
    """Ray's own MLflow logger for a Tune search where tracking is on: each trial an MLflow run (its
    params and every result it reports), nested under the flow's run. Empty where tracking is off or
    its server does not answer, so that a search never waits on it."""

    def callbacks(mlflow) -> list:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        parent = flow_parent(mlflow, cfg, experiment_id(mlflow, cfg))
        flow = current_flow()
        tags = {"method": flow.flow_name or "tune", "study": flow.name or "", "role": "trial"}
        tags |= {"mlflow.parentRunId": parent} if parent else {}
        return [
            MLflowLoggerCallback(
                tracking_uri=tracking_uri(cfg),
                experiment_name=cfg.tracking.experiment,
                tags=redact(tags),
                save_artifact=False,
            )
        ]

    return guarded(cfg, "tune search", lambda: callbacks(client(cfg))) or []
