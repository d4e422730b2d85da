"""prefect.yaml against a real Prefect server on loopback: deploy, a process worker, run_deployment, serve.

The server, the worker and `asymptote serve` are real subprocesses with their own process groups and a
PREFECT_HOME in a temp dir; each is stopped in a finally (a worker ignores its first SIGTERM, so it
gets a second). The flow run clones this repository's committed HEAD (prefect.yaml's pull steps).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import tiny_pretrain_config
from servers import free_port, redis_server

from asymptote.flows import PretrainResult
from asymptote.infra.deployments import deploy, recipe_parameters
from asymptote.store import Store

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's `prefect`, `asymptote` and `python`


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )  # own process group: stop it and its children together


def _stop(proc: subprocess.Popen, signals: int = 2) -> None:
    """SIGTERM the group (twice for a worker: it ignores the first), then SIGKILL what is left."""
    for _ in range(signals):
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for(check, what: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def _running(cmd, env, log, ready, what, signals=1):
    proc = _start(cmd, env, log)
    try:
        _wait_for(ready, what, 120, proc, log)
        yield proc
    finally:
        _stop(proc, signals)


@dataclass
class Server:
    url: str
    env: dict[str, str]
    logs: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_ADDRESS"))} | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "ASYMPTOTE_CACHE": str(home / "cache"),
    }
    port = url.rsplit(":", 1)[1].split("/")[0]
    with _running(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        env,
        home / "server.log",
        lambda: _healthy(url),
        "prefect server",
    ):
        yield Server(url, env, home)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("deployments") / "store")


@contextmanager
def _api(url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        yield


def _tiny_parameters() -> dict:
    """The run's config: tiny, and without a store (the deployment's environment names it)."""
    cfg = tiny_pretrain_config("unused").model_dump(mode="json", exclude={"store"})
    return {"config": cfg}


def _check_result(flow_run, store_uri: str) -> PretrainResult:
    assert flow_run.state.is_completed(), flow_run.state
    result = flow_run.state.result()
    assert isinstance(result, PretrainResult)
    assert result.flow_run_id == str(flow_run.id)
    store = Store(store_uri)
    assert result.run.uri.startswith(store.uri()) and store.has(result.run.rel)
    assert result.metrics["val_loss"] == pytest.approx(
        store.read_json(result.run.rel, "summary.json")["val_loss"]
    )
    assert store.read_json(result.run.rel, "summary.json")["steps"] == 30
    assert Path(result.report_uri).exists()
    # the flow's own result record is a file in the store, which is where this process just read it from
    assert Path(store.path("prefect", "results", flow_run.state.data.storage_key)).exists()
    return result


def test_every_deployment_runs_an_exported_flow_with_a_valid_recipe():
    import asymptote.flows as flows
    from asymptote.config import build, load
    from asymptote.flows import registry as methods
    from asymptote.infra.deployments import read_specs

    specs = read_specs(ROOT / "prefect.yaml")
    by_flow = {spec.entrypoint.rsplit(":", 1)[1]: spec for spec in specs}
    assert len(by_flow) == len(specs)  # one deployment per flow
    raw = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    for name, entry in methods.flows().items():  # every flow of the registry is deployed, with its recipe
        spec = by_flow.get(name)
        assert spec is not None, f"flow {name} has no deployment in prefect.yaml"
        assert spec.entrypoint == entry["flow"] and spec.load_flow().name == getattr(flows, name).name
        assert raw[spec.name]["parameters"]["config"] == f"{{{{ asymptote.recipes.{entry['recipe']} }}}}"
        build(load(entry["config"]), spec.parameters["config"])  # the recipe is a valid config
    with pytest.raises(ValueError, match="no such deployment"):
        read_specs(ROOT / "prefect.yaml", only=["nope"])


@pytest.mark.slow
def test_deploy_all_from_prefect_yaml_and_run_on_a_process_worker(server, shared_store, monkeypatch):
    store = shared_store
    monkeypatch.setenv(
        "PREFECT_HOME", server.env["PREFECT_HOME"]
    )  # the deploy subprocess keeps out of ~/.prefect
    with _api(
        server.url
    ):  # creates the work pool, then runs `prefect --no-prompt deploy --all` in the checkout
        deploy(ROOT, store=store)

    from prefect import get_client
    from prefect.deployments import run_deployment

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    recipes = recipe_parameters()
    with _api(server.url), get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    for entry in spec:  # every deployment is there, its parameters from its recipe, its schedules on
        dep = deployments[entry["name"]]
        recipe = re.fullmatch(r"\{\{ asymptote\.recipes\.([\w-]+) \}\}", entry["parameters"]["config"]).group(
            1
        )
        assert dep.entrypoint == entry["entrypoint"] and dep.parameters["config"] == recipes[recipe]
        assert dep.work_pool_name == "asymptote" and dep.job_variables["env"]["ASYMPTOTE_STORE"] == store
        assert [s.schedule.cron for s in dep.schedules] == [s["cron"] for s in entry.get("schedules", [])]
        assert _is_commit_of_this_checkout(
            dep.pull_steps[0]["prefect.deployments.steps.git_clone"]["commit_sha"]
        )

    log = server.logs / "worker.log"
    worker = [str(BIN / "prefect"), "worker", "start", "--pool", "asymptote", "--work-queue", "default"]
    with (
        _running(worker, server.env, log, lambda: "started" in log.read_text().lower(), "worker", signals=2),
        _api(server.url),
    ):
        flow_run = run_deployment(
            "pretrain/pretrain", parameters=_tiny_parameters(), timeout=300, poll_interval=1
        )
        if not flow_run.state.is_completed():
            pytest.fail(f"{flow_run.state}:\n{log.read_text()[-5000:]}")
        result = _check_result(flow_run, store)
    assert result.run.summary["params"] < 200_000  # the tiny model from the parameters, not the recipe's


def _is_commit_of_this_checkout(sha: str) -> bool:
    """The recorded commit is HEAD or behind it (HEAD may move on while the test runs)."""
    return (
        subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", sha, "HEAD"]).returncode == 0
    )


@pytest.mark.slow
def test_serve_runs_the_same_deployments_without_a_work_pool(server, shared_store):
    """The store the worker used: after the worker test, the served run reuses its cached steps."""
    from prefect.deployments import run_deployment

    store = shared_store
    log = server.logs / "serve.log"

    serve = [str(BIN / "asymptote"), "serve", "--only", "pretrain", "--store", store, "--no-schedules"]
    ready = lambda: "being served" in log.read_text()  # noqa: E731 (printed once the deployments are applied)
    with _running(serve, server.env, log, ready, "asymptote serve", signals=2), _api(server.url):
        flow_run = run_deployment(
            "pretrain/pretrain", parameters=_tiny_parameters(), timeout=300, poll_interval=1
        )
        if not flow_run.state.is_completed():
            pytest.fail(f"{flow_run.state}:\n{log.read_text()[-5000:]}")
        _check_result(flow_run, store)


FLOW_IN_A_PROCESS = """
import sys
from helpers import tiny_pretrain_config
from asymptote.flows import pretrain
print("flow run", pretrain(tiny_pretrain_config(sys.argv[1])).flow_run_id)
"""


@pytest.mark.slow
def test_a_flow_run_publishes_its_table_and_links_to_the_server(server, tmp_path):
    """The artifacts a run leaves in the Prefect server a team looks at: table, links, markdown."""
    from test_artifacts import flow_run_artifacts

    from asymptote.flows.reporting import artifact_key

    store = str(tmp_path / "store")
    env = server.env | {"PYTHONPATH": str(ROOT / "tests")}
    out = subprocess.run(
        [sys.executable, "-c", FLOW_IN_A_PROCESS, store], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    flow_run_id = re.search(r"flow run (\S+)", out.stdout).group(1)
    key = artifact_key("pretrain", tiny_pretrain_config(store))
    with _api(server.url):
        artifacts = flow_run_artifacts(flow_run_id)
    assert {"pretrain-report", f"{key}-results", f"{key}-report", f"{key}-store"} <= set(artifacts)
    assert artifacts[f"{key}-results"].type == "table" and "val_loss" in str(artifacts[f"{key}-results"].data)
    assert Path(store).resolve().as_uri() in artifacts[f"{key}-store"].data


@pytest.mark.slow
def test_a_served_run_takes_the_redis_password_from_its_environment(server, tmp_path):
    """Prefect keeps the run's parameters with the password as ***; the process that runs the flow
    takes the real URL from its own ASYMPTOTE_REDIS_URL and locks on the password-protected Redis."""
    from prefect import get_client
    from prefect.deployments import run_deployment
    from test_secrets import SECRET, locks_taken

    from asymptote.redact import redact_text

    store, log = tmp_path / "store", server.logs / "serve-secret.log"
    with redis_server(SECRET) as url:
        env = server.env | {"ASYMPTOTE_REDIS_URL": url}
        serve = [
            str(BIN / "asymptote"),
            "serve",
            "--only",
            "pretrain",
            "--store",
            str(store),
            "--no-schedules",
        ]
        ready = lambda: "being served" in log.read_text()  # noqa: E731
        parameters = _tiny_parameters()
        parameters["config"]["store"] = {"redis_url": redact_text(url)}  # as Prefect stores a config
        with _running(serve, env, log, ready, "asymptote serve", signals=2), _api(server.url):
            flow_run = run_deployment(
                "pretrain/pretrain", parameters=parameters, timeout=300, poll_interval=1
            )
            if not flow_run.state.is_completed():
                pytest.fail(f"{flow_run.state}:\n{log.read_text()[-5000:]}")
            with get_client(sync_client=True) as client:
                stored = client.read_flow_run(flow_run.id).parameters
        assert locks_taken(url)
    assert stored["config"]["store"]["redis_url"] == redact_text(url) and SECRET not in str(stored)
    assert SECRET not in log.read_text()
    assert [p for p in store.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()] == []
