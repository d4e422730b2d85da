"""MLflow tracking against a real `mlflow server` on loopback: what a run logs, how a flow's runs nest,
that a tracking server that is down never stops or changes training, and that no secret reaches it."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import struct
import subprocess
import sys
import threading

import pytest
from helpers import tiny_pretrain_config
from mlflow.tracking import MlflowClient
from servers import free_port, port_open, stop_group, wait_until
from test_scaling_flow import TINY

from asymptote.config import TrackingConfig, local_tracking_db, tracking_uri
from asymptote.flows.pretraining import pretrain
from asymptote.flows.scaling import ScalingStudyConfig, scaling_study
from asymptote.infra import tracking
from asymptote.job_spec import make_job
from asymptote.recipes import resolve
from asymptote.redact import redact_text
from asymptote.store import Store
from asymptote.tuning.tune_pretrain import PretrainSearchConfig, tune_pretrain

SECRET = "s3cr3t-tracking-never-sees"


def tracked(cfg, uri: str | None, experiment: str = "asymptote", **fields):
    """cfg with its store's tracking section set. Calls may take up to a minute here: a loaded CI
    machine can hold a request past the 5 s default, and the client then skips tracking for a while
    by design (a server that fails a call is not tried again at once), which these tests do not test."""
    section = TrackingConfig(uri=uri, experiment=experiment, **({"timeout_s": 60.0} | fields))
    return cfg.model_copy(update={"store": cfg.store.model_copy(update={"tracking": section})})


def runs_of(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def test_tracking_is_off_by_default_and_named_by_the_standard_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_pretrain_config(str(tmp_path))
    assert tracking_uri(cfg.store) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tiny_pretrain_config(str(tmp_path)).store) == "http://127.0.0.1:5000"
    local = tracked(tiny_pretrain_config(str(tmp_path)), None, local=True).store
    assert tracking_uri(local) == f"sqlite:///{tmp_path.resolve()}/tracking/mlflow.db"


def test_roles_follow_the_plans_names():
    assert tracking.role("tiny") == "single"
    assert tracking.role("base-member-3") == "member 3"
    assert tracking.role("demo student token_kl") == "student token_kl"
    assert tracking.role("soups-base") == "base"
    assert tracking.role("L1-d16 D=1,500 lr=0.03 wd=0.1 ep=2") == "search point"
    assert tracking.role("L1-d16 D=1,500 lr=0.03 wd=0.1 ep=2 seed 2") == "seed 2"


@pytest.mark.slow
def test_a_flow_logs_its_runs_nested_and_no_secret(ray_local, prefect_api, mlflow_uri, tmp_path):
    cfg = tracked(tiny_pretrain_config(str(tmp_path / "a")), mlflow_uri, "pretrain-test")
    res = pretrain(cfg)
    client = MlflowClient(mlflow_uri)
    runs = runs_of(client, "pretrain-test")
    child = next(r for r in runs if r.data.tags.get(tracking.RUN_KEY_TAG) == res.run.key)
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags[tracking.FLOW_RUN_TAG] == str(res.flow_run_id)
    assert parent.data.tags["method"] == child.data.tags["method"] == "pretrain"
    assert child.data.tags["role"] == "single" and child.data.tags["seed"] == "0"
    assert child.data.tags["study"] == parent.data.tags["study"]

    params = child.data.params
    assert params["run_key"] == res.run.key and params["train.lr"] == "0.003" and params["code_version"]
    assert "store.uri" not in params and "compute.num_workers" not in params  # volatile: not logged
    store = Store(cfg.store)
    records = [json.loads(line) for line in store.get_bytes(f"{res.run.rel}/metrics.jsonl").splitlines()]
    steps = [r["step"] for r in records]
    assert steps == [5, 10, 15, 20, 25, 30]
    for name in ("train_loss", "lr", "tok_per_s"):
        history = client.get_metric_history(child.info.run_id, name)
        assert [m.step for m in history] == steps, name
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")] == [15, 30]
    final = client.get_metric_history(child.info.run_id, "val_loss")[-1].value
    assert final == pytest.approx(res.run.summary["val_loss"], rel=1e-6)
    assert child.data.tags["asymptote.run_uri"].endswith(res.run.rel)
    assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"links.json", "loss.png"}
    final = client.get_run(child.info.run_id).data.metrics  # the flow's evaluate step logged these
    assert len(client.get_metric_history(child.info.run_id, "test_loss")) == 1
    assert final["test_loss"] == pytest.approx(res.metrics["test_loss"]) and "test_bpb" in final

    # A credential in a URL that a config carries (here a corpus address, logged as a param, and the
    # Redis lock address, never logged) reaches MLflow only as ***.
    job = make_job(
        name="tiny",
        model=cfg.model,
        data=cfg.data.model_copy(update={"source": f"s3://reader:{SECRET}@corpora/text.jsonl"}),
        train=cfg.train,
        data_artifact=res.data.rel,
        store=cfg.store.model_copy(update={"redis_url": f"redis://:{SECRET}@127.0.0.1:1/0"}),
    )
    # logged against the committed run's files (the corpus address is never read: nothing trains)
    leaked = tracking.log_run(job.store, job.model_copy(update={"key": res.run.key}), store, res.run.summary)
    logged = client.get_run(leaked)
    assert logged.data.params["data.source"] == redact_text(job.data.source)
    for run in runs_of(client, "pretrain-test"):
        text = repr(run.data.params) + repr(run.data.tags) + repr(run.data.metrics)
        assert SECRET not in text


@pytest.mark.slow
def test_a_server_that_is_down_neither_stops_nor_changes_training(
    ray_local, prefect_api, mlflow_uri, tmp_path, caplog
):
    logged = pretrain(tracked(tiny_pretrain_config(str(tmp_path / "a")), mlflow_uri, "down-test"))
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: a tracking server that is down
    with caplog.at_level(logging.WARNING, logger="asymptote.infra.tracking"):
        untracked = pretrain(tracked(tiny_pretrain_config(str(tmp_path / "b")), down, "down-test"))
    assert untracked.run.key == logged.run.key
    assert untracked.run.summary["val_loss"] == logged.run.summary["val_loss"]
    assert untracked.metrics["test_loss"] == logged.metrics["test_loss"]
    warnings = [r for r in caplog.records if "MLflow tracking at" in r.getMessage()]
    assert len(warnings) == 1 and "training goes on untracked" in warnings[0].getMessage()


class _ResetsFirstRequest(http.server.BaseHTTPRequestHandler):
    """Answers MLflow's experiment search, except the first request, whose connection it resets
    (what a client meets when the server closes a pooled keep-alive connection as a request goes out)."""

    seen = 0

    def do_POST(self):  # noqa: N802 - http.server's handler name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen += 1
        if type(self).seen == 1:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # linger 0: the close sends a reset
            return
        body = json.dumps({"experiments": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_connection_reset_once_is_retried_and_tracking_stays_on(tmp_path):
    _ResetsFirstRequest.seen = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ResetsFirstRequest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        cfg = tracked(tiny_pretrain_config(str(tmp_path)), uri, timeout_s=10.0).store
        found = tracking.guarded(cfg, "search", lambda: tracking.client(cfg).search_experiments())
    finally:
        server.shutdown()
    assert _ResetsFirstRequest.seen == 2  # the reset request, then its retry
    assert found == [] and tracking._down_until.get(uri, 0.0) == 0.0  # answered; the server not skipped


@pytest.mark.slow
def test_local_tracking_shows_in_asymptote_ui(ray_local, prefect_api, tmp_path):
    cfg = tracked(tiny_pretrain_config(str(tmp_path / "store")), None, "local-test", local=True)
    res = pretrain(cfg)
    assert local_tracking_db(cfg.store).exists()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asymptote.cli", "ui", "--store", cfg.store.uri, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == f"MLflow UI: http://127.0.0.1:{port}"
        runs = runs_of(MlflowClient(f"http://127.0.0.1:{port}"), "local-test")
        assert [r.data.tags[tracking.RUN_KEY_TAG] for r in runs if r.data.tags.get("role") == "single"] == [
            res.run.key
        ]
    finally:
        stop_group(proc)
    # the UI runs in a process group of its own: stopping the command must stop it too
    wait_until(lambda: not port_open(port), 30, "the closed port of a UI whose command was stopped")


@pytest.mark.slow
def test_a_scaling_study_is_one_parent_with_its_runs_under_it(ray_local, prefect_api, mlflow_uri, tmp_path):
    cfg = resolve(ScalingStudyConfig, base=TINY | {"store": {"uri": str(tmp_path)}})
    res = scaling_study(tracked(cfg, mlflow_uri, "scaling-test"))
    client = MlflowClient(mlflow_uri)
    runs = runs_of(client, "scaling-test")
    by_id = {r.info.run_id: r for r in runs}
    children = [r for r in runs if tracking.RUN_KEY_TAG in r.data.tags]
    store = Store(cfg.store)
    trained = set(store.ls("runs"))
    assert {r.data.tags[tracking.RUN_KEY_TAG] for r in children} == trained
    study = {by_id[r.data.tags["mlflow.parentRunId"]].data.tags[tracking.FLOW_RUN_TAG] for r in children}
    assert str(res.flow_run_id) in study
    for r in children:
        lines = store.get_bytes(f"runs/{r.data.tags[tracking.RUN_KEY_TAG]}/metrics.jsonl").splitlines()
        assert len(client.get_metric_history(r.info.run_id, "train_loss")) == len(lines)
    print(
        sorted(
            {(r.data.tags["method"], r.data.tags["role"], r.data.tags["mlflow.runName"]) for r in children}
        )
    )


@pytest.mark.slow
def test_a_tune_search_logs_its_trials_through_rays_mlflow_logger(ray_local, mlflow_uri, tmp_path):
    base = tracked(tiny_pretrain_config(str(tmp_path), max_steps=20, eval_every=10), mlflow_uri, "tune-test")
    space = {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    res = tune_pretrain(PretrainSearchConfig(base=base, num_samples=2, seed=1, space=space))
    client = MlflowClient(mlflow_uri)
    trials = [r for r in runs_of(client, "tune-test") if r.data.tags.get("role") == "trial"]
    assert len(trials) == 2
    assert sorted(float(r.data.params["train.lr"]) for r in trials) == pytest.approx(
        sorted(t.params["train.lr"] for t in res.trials)
    )
    for r in trials:  # the evaluations at steps 10 and 20, then the final summary
        assert len(client.get_metric_history(r.info.run_id, "val_loss")) == 3


def test_models_no_run_stands_for_are_runs_with_their_test_figures(mlflow_uri, tmp_path):
    """Soups, merges and ensembles are logged as MLflow runs of their own, with what was measured."""
    cfg = tracked(tiny_pretrain_config(str(tmp_path / "m")), mlflow_uri, "models-test")
    store = Store(cfg.store)
    models = [
        {
            "name": "uniform",
            "role": "soup",
            "rel": "soups/k/uniform",
            "metrics": {"test_loss": 2.5, "test_gain": 0.01},
        },
        {
            "name": "ensemble of 2",
            "role": "ensemble",
            "rel": None,
            "metrics": {"test_loss": 2.4, "test_gain": None},
        },
    ]
    tracking.log_models(cfg.store, store, models)
    runs = {r.data.tags["mlflow.runName"]: r for r in runs_of(MlflowClient(mlflow_uri), "models-test")}
    assert set(runs) == {"uniform", "ensemble of 2"}
    assert runs["uniform"].data.tags["role"] == "soup" and runs["uniform"].data.metrics == {
        "test_loss": 2.5,
        "test_gain": 0.01,
    }
    assert runs["uniform"].data.tags["asymptote.run_uri"] == store.uri("soups/k/uniform")
    assert runs["ensemble of 2"].data.metrics == {
        "test_loss": 2.4
    }  # nothing logged for what was not measured
