"""Shared fixtures: a real local Ray, a real Prefect API (temporary database), a fresh store per test.

Nothing here mocks Ray, Prefect or S3. Every process a fixture starts, it stops (never `ray stop`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asymptote.infra import settings

settings.apply()  # the test session: Prefect and Ray settings before either is imported

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs, small object store), shut down at the end."""
    from asymptote.infra.cluster import ray_session

    with ray_session(num_cpus=2):
        yield


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API on a temporary SQLite database for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def store_uri(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def store(store_uri):
    from asymptote.store import Store

    return Store(store_uri)


@pytest.fixture(scope="session")
def corpus_path(tmp_path_factory) -> str:
    """A small text file: the embedded default corpus written out (always available, ~466 KB)."""
    from asymptote.data import read_source

    path = tmp_path_factory.mktemp("corpus") / "python-docs.txt"
    path.write_bytes(read_source("builtin:python-docs"))
    return str(path)


# ----------------------------------------------------------------------------- servers on loopback
# Credentials for the S3-compatible test server are set before any Ray starts, so Ray workers inherit
# them the way cluster nodes inherit an instance role. The secret is distinctive so tests can prove it
# never lands in an artifact, a Prefect result or a log.
TEST_SECRET = "asymptote-test-secret-must-never-leak"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "asymptote-test-key")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", TEST_SECRET)


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server as a separate process on a free loopback port."""
    from servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_store_cfg(s3_endpoint):
    """A StoreConfig on a fresh bucket of the test S3 server."""
    import uuid

    from servers import make_bucket

    from asymptote.config import StoreConfig

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_endpoint, bucket)
    return StoreConfig(uri=f"s3://{bucket}/asymptote", endpoint_url=s3_endpoint)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, local artifact root) on a free loopback port."""
    from servers import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on a free loopback port (Debian's package; .ci/run installs it)."""
    from servers import redis_server

    with redis_server() as url:
        yield url
