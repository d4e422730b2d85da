"""The pretrain flow end to end on real local Ray and a real Prefect API."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_pretrain_config

from asymptote.flows.pretrain import pretrain


def test_flow_trains_evaluates_and_reports(ray_local, prefect_api, store_uri, store):
    res = pretrain(tiny_pretrain_config(store_uri))
    summary = store.read_json(res.run.rel, "summary.json")
    assert summary["steps"] == 30
    assert res.metrics["val_loss"] == pytest.approx(summary["val_loss"], rel=1e-6)
    assert res.metrics["val_loss"] < 5.0  # from ln(256) = 5.55 at init
    names = set(store.manifest(res.run.rel).files)
    assert {"model.safetensors", "config.json", "metrics.jsonl", "loss.png", "summary.json"} <= names
    config = json.loads(store.read(res.run.rel, "config.json"))
    assert config["train"]["max_steps"] == 30 and "code_version" in config
    assert res.report_uri.endswith("report.md") and res.flow_run_id
