"""No secret leaves the process: a password in store.redis_url reaches neither Prefect (stored flow
parameters, artifacts, logs) nor the store, while the run still takes its Redis locks with it."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from helpers import tiny_pretrain_config
from servers import redis_server

from asymptote.config import PretrainConfig, StoreConfig
from asymptote.redact import MASK

SECRET = "redis-pw-" + uuid.uuid4().hex  # distinctive: any copy of it anywhere is a leak


def locks_taken(url: str) -> bool:
    """Whether the Redis server saw lock commands (a lock is SET NX with a lease; released by script)."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return "cmdstat_set" in stats and ("cmdstat_evalsha" in stats or "cmdstat_eval" in stats)


def test_a_dumped_config_holds_no_password_and_a_worker_restores_it(monkeypatch):
    url = f"redis://:{SECRET}@cache.example:6379/0"
    config = PretrainConfig(store=StoreConfig(uri="/tmp/s", redis_url=url))
    assert config.store.redis_url == url  # in memory: the real URL, for the lock manager
    dumped = config.model_dump(mode="json")
    assert SECRET not in json.dumps(dumped) and SECRET not in config.model_dump_json()
    assert dumped["store"]["redis_url"] == f"redis://:{MASK}@cache.example:6379/0"
    # a worker that reads such parameters back needs the real URL from its environment
    monkeypatch.delenv("ASYMPTOTE_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="ASYMPTOTE_REDIS_URL"):
        PretrainConfig.model_validate(dumped)
    monkeypatch.setenv("ASYMPTOTE_REDIS_URL", url)
    assert PretrainConfig.model_validate(dumped).store.redis_url == url
    monkeypatch.setenv("ASYMPTOTE_REDIS_URL", "redis://:other@elsewhere:6379/0")  # not the same server
    with pytest.raises(ValueError, match="hidden"):
        PretrainConfig.model_validate(dumped)


def test_a_tracking_server_url_loses_its_credentials_the_same_way(monkeypatch):
    url = f"https://ann:{SECRET}@mlflow.example"
    store = StoreConfig(uri="/tmp/s", tracking={"uri": url})
    dumped = store.model_dump(mode="json")
    assert SECRET not in json.dumps(dumped) and store.tracking.uri == url
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # where the flow runs
    assert StoreConfig.model_validate(dumped).tracking.uri == url


def _flow_run_records(flow_run_id) -> dict:
    """What Prefect keeps of a flow run: its parameters, its artifacts and its logs, from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # logs reach the API from a background worker
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return {
        "parameters": json.dumps(run.parameters),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]),
        "logs": "\n".join(log.message for log in logs),
        "n_artifacts": len(artifacts),
    }


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_a_run_with_a_redis_password_leaves_it_nowhere(ray_local, prefect_api, tmp_path, capfd, caplog):
    from asymptote.flows.pretraining import pretrain

    caplog.set_level(logging.INFO, logger="prefect")  # the session logs warnings only: log everything here
    store_root = tmp_path / "store"
    with redis_server(SECRET) as url:
        config = tiny_pretrain_config(str(store_root))
        config.store.redis_url = url
        result = pretrain(config)
        # the locks were taken on the password-protected server: the real URL was used in memory
        assert locks_taken(url)
    records = _flow_run_records(result.flow_run_id)
    assert f":{MASK}@127.0.0.1" in records["parameters"]  # the store section is there, redacted
    assert records["n_artifacts"] >= 1 and "Completed" in records["logs"]  # there was something to search
    for what in ("parameters", "artifacts", "logs"):
        assert SECRET not in records[what], f"the redis password is in Prefect's {what}"
    captured = capfd.readouterr()
    assert SECRET not in captured.out and SECRET not in captured.err and SECRET not in caplog.text
    assert _files_holding(store_root, SECRET.encode()) == []
    assert (store_root / "runs").is_dir()  # the store was written, and searched


def test_redaction_blanks_secret_fields_and_keeps_every_config_field():
    from asymptote.flows.registry import MainConfig
    from asymptote.redact import redact

    config = MainConfig().model_dump(mode="json")  # every method's section: token_dtype, max_train_tokens...
    assert redact(config) == config
    secrets = {"github_token": "t", "aws_secret_access_key": "k", "password": "p", "client_secret": "c"}
    assert redact(secrets) == {k: MASK for k in secrets}
