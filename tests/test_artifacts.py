"""A flow's results in the Prefect UI: its table of headline results, its links and its progress bar,
read back from a real Prefect API."""

from __future__ import annotations

import re

import pytest
from helpers import tiny_pretrain_config

from asymptote.config import build, load
from asymptote.flows.registry import METHODS
from asymptote.flows.reporting import Progress, artifact_key
from asymptote.recipes import load_recipe

KEY = re.compile(r"^[a-z0-9-]+$")  # what Prefect accepts as an artifact key


def flow_run_artifacts(flow_run_id) -> dict:
    """Artifact key -> artifact of one flow run, from the API."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_filter = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(str(flow_run_id))]))
    with get_client(sync_client=True) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=flow_filter)}


def test_every_method_has_a_table_and_a_stable_valid_key():
    for name, method in METHODS.items():
        assert callable(load(method.table)), name
        config = build(load(method.config), load_recipe(method.recipe))
        key = artifact_key(name, config)
        assert KEY.match(key) and key == artifact_key(
            name, build(load(method.config), load_recipe(method.recipe))
        )
    a, b = tiny_pretrain_config("/a"), tiny_pretrain_config("/b", log_every=3)
    assert artifact_key("pretrain", a) == artifact_key("pretrain", b)  # where and how: same artifacts
    assert artifact_key("pretrain", a) != artifact_key("pretrain", tiny_pretrain_config("/a", lr=1e-3))


def test_progress_is_a_noop_outside_a_flow_run():
    bar = Progress("pretrain", tiny_pretrain_config("/a"))
    bar(1, 2)
    assert bar.id is None


def test_progress_artifact_follows_the_members(prefect_api):
    from prefect import flow

    @flow
    def members(n: int) -> tuple[str, object]:
        bar = Progress("pretrain", tiny_pretrain_config("/a"), "runs")
        for done in range(n + 1):
            bar(done, n)
        return bar.key, bar.id

    key, artifact_id = members(3)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_artifacts()
    ours = [a for a in artifact if a.id == artifact_id]
    assert ours and ours[0].key == key and ours[0].type == "progress" and float(ours[0].data) == 100.0
    assert ours[0].description == "3/3 runs finished"


@pytest.mark.slow
def test_pretrain_publishes_its_metrics_table_and_links(ray_local, prefect_api, store_uri):
    from asymptote.flows.pretraining import pretrain

    config = tiny_pretrain_config(store_uri)
    result = pretrain(config)
    key = artifact_key("pretrain", config)
    artifacts = flow_run_artifacts(result.flow_run_id)
    assert {"pretrain-report", f"{key}-results", f"{key}-report", f"{key}-store"} <= set(artifacts)
    table = artifacts[f"{key}-results"]
    assert table.type == "table"
    rows = {r["figure"]: r["value"] for r in _rows(table.data)}
    assert rows["val_loss"] == pytest.approx(result.metrics["val_loss"]) and rows["params"] > 0
    report = artifacts[f"{key}-report"]
    assert report.type == "markdown"  # a link artifact is stored as markdown: [text](link)
    assert result.report_uri in report.data and report.data.startswith("[file://")


def _rows(data) -> list[dict]:
    import json

    return json.loads(data) if isinstance(data, str) else data


@pytest.mark.slow
def test_distillation_publishes_its_comparison_and_its_members_progress(ray_local, prefect_api, store_uri):
    """A study of many members: the progress bar ends at every teacher member finished."""
    from test_distill_flow import tiny_config

    from asymptote.flows.distillation import distill

    config = tiny_config(store_uri)
    result = distill(config)
    key = artifact_key("distill", config)
    artifacts = flow_run_artifacts(result.flow_run_id)
    rows = _rows(artifacts[f"{key}-results"].data)
    assert [r["model"] for r in rows[:2]] == ["single", "ensemble x2"] and len(rows) == 2 + len(
        result.students
    )
    assert rows[0]["test_loss"] == pytest.approx(result.single_loss)
    progress = artifacts[f"{key}-progress"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert progress.description == "2/2 teacher members finished"
