"""Prefect deployments of the asymptote flows: prefect.yaml's build step, deploy helpers, `asymptote serve`.

prefect.yaml (at the root of a checkout) is the one description of the deployments: which flow,
which recipe gives its parameters, which schedule, which work pool. Two ways to run them:

- with a work pool: `prefect work-pool create asymptote --type process`, then
  `ASYMPTOTE_STORE=... prefect --no-prompt deploy --all` (or `deploy()` here), then `prefect worker
  start --pool asymptote`. The build step below pins the git commit the workers clone, the store,
  and the Prefect result storage block (inside the store, so callers of run_deployment read results).
- without one: `asymptote serve` reads the same prefect.yaml and serves the flows from its own process.

Only prefect.yaml's build step and this module import asymptote at deploy time; the flows themselves
are loaded by module path (asymptote.flows.<module>:<flow>) so a run imports the installed package.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from pydantic import BaseModel, Field

import asymptote
from asymptote.config import StoreConfig, from_env
from asymptote.recipes import load_recipe, recipe_names
from asymptote.redact import redact
from asymptote.store import Store, cache_dir

DEFAULT_FILE = Path("prefect.yaml")
WORK_POOL = "asymptote"


class BuildSettings(BaseModel):
    """Settings of prefect.yaml's build step; each field's variable gives its default."""

    store: str | None = Field(default_factory=from_env("ASYMPTOTE_STORE"))
    """The store every worker reaches (s3://... for a cluster); default $ASYMPTOTE_STORE. Required:
    deployments never fall back to a local ./artifacts."""
    git_url: str | None = Field(default_factory=from_env("ASYMPTOTE_GIT_URL"))
    """The URL workers clone; default $ASYMPTOTE_GIT_URL, else the `origin` remote, else the checkout's
    own path (a worker on the same machine can clone that)."""


# ----------------------------------------------------------------------------- the build step


def recipe_parameters() -> dict[str, dict[str, Any]]:
    """Every bundled recipe as a dict: what a deployment's `config` parameter starts from.

    Prefect stores a deployment's parameters and shows them in its UI, so they hold no secret: a
    password in a URL is written as ***, and a worker takes the real store.redis_url from its own
    $ASYMPTOTE_REDIS_URL (set it in the worker's environment, not in prefect.yaml's job variables,
    which Prefect stores too)."""
    return {name: redact(load_recipe(name)) for name in recipe_names()}


def _git(directory: str | Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed in {directory}: {out.stderr.strip()}")
    return out.stdout.strip()


def checkout(directory: str | Path = ".", git_url: str | None = None) -> dict[str, str]:
    """The git checkout deployments are made from: the URL workers clone and the exact commit.

    The URL is `git_url` (default BuildSettings.git_url), else the `origin` remote, else the checkout's
    own path. Workers run the commit, so uncommitted edits are not deployed.
    """
    try:
        top = _git(directory, "rev-parse", "--show-toplevel")
    except RuntimeError as err:
        raise RuntimeError(f"deployments are made from a git checkout of asymptote: {err}") from None
    try:
        remote = _git(top, "remote", "get-url", "origin")
    except RuntimeError:
        remote = Path(top).as_uri()
    if _git(top, "status", "--porcelain", "--untracked-files=no"):
        print(f"note: {top} has uncommitted changes; workers run the committed HEAD only")
    return {
        "repository": git_url or BuildSettings().git_url or remote,
        "branch": _git(top, "rev-parse", "--abbrev-ref", "HEAD"),
        "commit": _git(top, "rev-parse", "HEAD"),
    }


def results_block(store_uri: str) -> str:
    """Save the Prefect result-storage block inside the store and return its slug (type/name).

    Flow results persisted there can be read by every machine that reaches the store: the worker
    that ran the flow and whoever called run_deployment.
    """
    from asymptote.infra.results import (
        result_storage,  # imports Prefect: `asymptote --help` imports this module
    )

    block = result_storage(Store(store_uri))
    return f"{block.get_block_type_slug()}/{block._block_document_name}"


def deployment_context(store: str | None = None, directory: str = ".") -> dict[str, Any]:
    """prefect.yaml's build step. Its outputs fill the `{{ asymptote.* }}` placeholders:
    store, results_block, repository, branch, commit and recipes.<name>."""
    uri = store or BuildSettings().store
    if not uri:
        raise ValueError(
            "ASYMPTOTE_STORE is not set: deployments need a store every worker reaches, e.g. "
            "`ASYMPTOTE_STORE=s3://my-bucket/asymptote prefect --no-prompt deploy --all`"
        )
    uri = Store(uri).uri()  # a local folder becomes absolute: workers run in their own directories
    if DEFAULT_FILE.exists():
        read_specs(DEFAULT_FILE)  # fail the deploy on a recipe that does not exist, before anything is made
    return {
        "store": uri,
        "results_block": results_block(uri),
        **checkout(directory),
        "recipes": recipe_parameters(),
    }


# ----------------------------------------------------------------------------- reading prefect.yaml


class DeploymentSpec(BaseModel):
    """One entry of prefect.yaml's `deployments:` with its recipe placeholders resolved."""

    name: str
    entrypoint: str
    """module:flow, e.g. asymptote.flows.pretraining:pretrain."""
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[dict[str, Any]] = Field(default_factory=list)
    """Prefect schedule entries as written in prefect.yaml (cron, timezone, active)."""

    def load_flow(self):
        from prefect.flows import load_flow_from_entrypoint

        return load_flow_from_entrypoint(self.entrypoint, use_placeholder_flow=False)


def read_specs(path: str | Path = DEFAULT_FILE, only: list[str] | None = None) -> list[DeploymentSpec]:
    """The deployments of a prefect.yaml, parameters filled from the bundled recipes."""
    from prefect.utilities.templating import apply_values

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run from a checkout of asymptote or pass --file PATH")
    entries = yaml.safe_load(path.read_text()).get("deployments") or []
    known = [e["name"] for e in entries]
    missing = sorted(set(only or []) - set(known))
    if missing:
        raise ValueError(f"--only {missing}: no such deployment in {path}; allowed: {', '.join(known)}")
    recipes = recipe_parameters()
    for entry in entries:  # a missing recipe would silently deploy the flow's defaults instead
        for name in re.findall(r"asymptote\.recipes\.([\w-]+)", json.dumps(entry)):
            if name not in recipes:
                raise ValueError(
                    f"{path}: deployment {entry['name']!r} uses recipe {name!r}, which does not exist; "
                    f"recipes: {', '.join(recipes)}"
                )
    values = {"asymptote": {"recipes": recipes}}
    fields = set(DeploymentSpec.model_fields)
    return [
        DeploymentSpec.model_validate(apply_values({k: v for k, v in e.items() if k in fields}, values))
        for e in entries
        if not only or e["name"] in only
    ]


# ----------------------------------------------------------------------------- deploying and serving


def ensure_work_pool(name: str = WORK_POOL, pool_type: str = "process") -> None:
    """Create the work pool prefect.yaml deploys to, unless it exists."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
        except ObjectAlreadyExists:
            pass


def deploy(
    project_dir: str | Path = ".",
    store: str | None = None,
    names: list[str] | None = None,
    pool_type: str = "process",
) -> None:
    """Python equivalent of `prefect --no-prompt deploy --all` (or `--name` each) in a checkout.

    Creates the work pool when missing, then runs Prefect's own deploy command (against the Prefect
    API this process uses) so that prefect.yaml means exactly what it means to Prefect.
    """
    from prefect.settings import get_current_settings

    ensure_work_pool(pool_type=pool_type)
    env = os.environ | {"PREFECT_API_URL": str(get_current_settings().api.url)}
    if store:
        env["ASYMPTOTE_STORE"] = store
    selection = [arg for n in names for arg in ("--name", n)] if names else ["--all"]
    subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *selection],
        cwd=project_dir,
        env=env,
        check=True,
    )


def _schedules(spec: DeploymentSpec) -> list:
    from prefect.schedules import Cron

    return [
        Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
        for s in spec.schedules
        if "cron" in s
    ]


def runner_deployments(specs: list[DeploymentSpec], schedules: bool = True) -> list:
    """RunnerDeployments for `prefect.serve`, loaded by module path so runs import the installed package."""
    from prefect.deployments.runner import EntrypointType

    return [
        spec.load_flow().to_deployment(
            spec.name,
            parameters=spec.parameters,
            description=spec.description,
            tags=spec.tags,
            schedules=_schedules(spec) if schedules else None,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for spec in specs
    ]


def use_store_for_results(store_uri: str) -> None:
    """Make flow runs started from this process persist their results in the store."""
    os.environ["ASYMPTOTE_STORE"] = store_uri
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "true"
    os.environ["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = results_block(store_uri)


def _import_safe_cwd() -> None:
    """Flow runs import asymptote with their working directory first on sys.path. A checkout's
    `asymptote/` folder there would shadow the installed package (whose flows/ and tasks/ live
    elsewhere in a checkout), so serve from a neutral folder unless the checkout is the installed one."""
    local = Path.cwd() / "asymptote"
    if local.is_dir() and local.resolve() != Path(asymptote.__file__).parent.resolve():
        os.chdir(cache_dir())


def cli(
    file: Path = typer.Option(DEFAULT_FILE, "--file", "-f", help="The prefect.yaml to serve."),
    only: list[str] = typer.Option([], "--only", help="Serve only this deployment (repeatable)."),
    store: Optional[str] = typer.Option(
        None,
        "--store",
        help="Artifact store root (folder or s3://...); else $ASYMPTOTE_STORE, else ./artifacts.",
    ),
    schedules: bool = typer.Option(
        True, "--schedules/--no-schedules", help="Keep prefect.yaml's cron schedules."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Most flow runs at a time."),
) -> None:
    """Serve the deployments of prefect.yaml from this process: no work pool or worker needed.

    Trigger them from the Prefect UI, `prefect deployment run <flow>/<name>`, or run_deployment().
    """
    from prefect.flows import serve

    specs = read_specs(file, only)
    uri = Store(StoreConfig(uri=store) if store else StoreConfig()).uri()
    use_store_for_results(uri)
    deployments = runner_deployments(specs, schedules)
    _import_safe_cwd()
    typer.echo(f"serving {', '.join(s.name for s in specs)}; store {uri}", err=True)
    serve(*deployments, limit=limit, print_starting_message=True)
