"""`asymptote ui`: MLflow's UI over the local tracking store, where `store.tracking.local=true` logs runs.

The store is a SQLite file beside the artifact store (`<store>/tracking/mlflow.db`), so a demo run
with local tracking and this command need no server set up beforehand. A team's own tracking server
has its own UI; this command is for one machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Optional

import typer

from asymptote.cli_options import StoreOpt
from asymptote.config import StoreConfig, local_tracking_db


def ui_command(db, host: str, port: int) -> list[str]:
    """`mlflow ui` over the SQLite store db; artifacts of runs tracked there live beside it."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        (db.parent / "artifacts").as_uri(),
        "--host",
        host,
        "--port",
        str(port),
    ]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> bool:
    """Whether the UI answers at url before timeout (False at once if its process exits)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                return True
        time.sleep(0.5)
    return False


def ui(
    store: Optional[str] = StoreOpt,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(5000, help="Port of the UI."),
) -> None:
    """Open MLflow's UI over the runs tracked locally (store.tracking.local=true); prints its address."""
    cfg = StoreConfig(uri=store) if store else StoreConfig()
    db = local_tracking_db(cfg)
    db.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    typer.echo(f"starting MLflow UI over sqlite:///{db} ...", err=True)
    # mlflow's own lines go to stderr, so stdout carries only the address (for scripts to read)
    # Browsing runs needs no GenAI job runner (a dozen polling workers, about half a core while idle).
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(ui_command(db, host, port), stdout=sys.stderr, start_new_session=True, env=env)
    # The UI runs in its own process group (so stopping it stops its workers, not us); a SIGTERM or
    # SIGHUP sent to us must still reach it, so they unwind through the finally below instead of
    # ending this process on the spot and leaving the UI running.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _unwind)
    try:
        if not wait_for(url, proc):
            typer.echo(f"MLflow UI did not start (exit code {proc.poll()})", err=True)
            raise typer.Exit(1)
        typer.echo(f"MLflow UI: {url}")
        proc.wait()
    finally:
        stop_group(proc)


def _unwind(signum, frame) -> None:
    raise SystemExit(128 + signum)


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop the UI and its workers (its whole process group): politely, then by force."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
