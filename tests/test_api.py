"""The Python API other pipelines use: flows from `asymptote.flows`, typed in and out, as subflows, cached."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from uuid import UUID

import pytest
from helpers import pretrain_task_states, tiny_pretrain_config
from prefect import flow
from pydantic import BaseModel

import asymptote.flows as flows
from asymptote.config import load
from asymptote.flows import PretrainResult, pretrain
from asymptote.flows import registry as methods


@flow(name="user-pipeline")
def user_pipeline(store_uri: str) -> PretrainResult:
    """Someone else's flow that needs a trained model."""
    return pretrain(tiny_pretrain_config(store_uri))


def _task_states(flow_run_id: str) -> dict[str, str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        parent = client.read_flow_run(UUID(flow_run_id)).parent_task_run_id
    return pretrain_task_states(flow_run_id) | {"(parent task)": str(parent)}


def test_a_flow_called_from_a_user_flow_returns_its_typed_result_and_is_cached(
    ray_local, prefect_api, store_uri, store
):
    first = user_pipeline(store_uri)
    assert isinstance(first, PretrainResult)
    assert PretrainResult.model_validate_json(first.model_dump_json()) == first  # serialisable as JSON
    assert store.has(store.relpath(first.run.uri)) and first.metrics["val_loss"] < 5.0
    states = _task_states(first.flow_run_id)
    assert states["(parent task)"] != "None"  # it ran as a subflow of the user's flow
    assert states["train"] == "Completed"

    second = user_pipeline(store_uri)
    assert second.run == first.run and second.metrics == first.metrics
    assert second.flow_run_id != first.flow_run_id
    assert _task_states(second.flow_run_id)["train"] == "Cached"  # the second call trained nothing


@pytest.mark.parametrize("name", list(methods.flows()))
def test_every_exported_flow_takes_a_typed_config_and_returns_a_typed_result(name):
    entry = methods.flows()[name]
    fn = getattr(flows, name).fn
    hints = typing.get_type_hints(fn)
    config, result = typing.get_args(hints["config"])[0], hints["return"]  # config: Config | None = None
    assert issubclass(config, BaseModel) and list(hints)[0] == "config"
    assert issubclass(result, BaseModel) and "flow_run_id" in result.model_fields
    assert config is load(entry["config"]) and result is load(entry["result"])
    assert {name, config.__name__, result.__name__} <= set(flows.__all__)
    assert getattr(flows, config.__name__) is config  # the exported types are the flow's own


RAY_FIRST = """
import ray  # the user's pipeline imported Ray before asymptote
from asymptote.infra.cluster import ray_session

with ray_session(num_cpus=1):
    print("answer", ray.get(ray.remote(lambda: 41 + 1).remote()))
"""


def test_a_pipeline_that_imported_ray_first_can_start_ray_through_asymptote(tmp_path):
    """asymptote's Ray defaults must not split a process from the local cluster it starts: Ray reads
    its auth mode at import, so setting it afterwards gave the GCS token auth and the driver none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", RAY_FIRST], capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer 42" in done.stdout
