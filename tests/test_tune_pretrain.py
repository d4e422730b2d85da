"""Ray Tune over pretrain runs on a real local Ray: Optuna proposals, Train V2 trials, results in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import tiny_pretrain_config
from pydantic import ValidationError

from asymptote.tuning.tune_pretrain import PretrainSearchConfig, tune_pretrain


def _reports(experiment: str) -> dict[str, list[dict]]:
    """Every result Tune recorded, per trial folder."""
    return {
        p.parent.name: [json.loads(line) for line in p.read_text().splitlines()]
        for p in Path(experiment).glob("*/result.json")
    }


@pytest.mark.slow
def test_optuna_search_trains_each_trial_as_a_run_and_commits_results(ray_local, store_uri, store):
    base = tiny_pretrain_config(store_uri, max_steps=20, eval_every=10)
    cfg = PretrainSearchConfig(
        base=base,
        num_samples=2,
        seed=1,
        space={
            "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
            "train.weight_decay": {"choices": [0.0, 0.3]},
        },
    )
    res = tune_pretrain(cfg)

    assert len(res.trials) == 2 and len({t.params["train.lr"] for t in res.trials}) == 2
    assert res.best_val_loss == min(t.val_loss for t in res.trials)
    for t in res.trials:  # each trial is an ordinary committed run trained with the proposed values
        rel = store.relpath(t.run_uri)
        config = json.loads(store.read(rel, "config.json"))
        assert config["train"]["lr"] == pytest.approx(t.params["train.lr"])
        assert config["train"]["weight_decay"] == t.params["train.weight_decay"]
        assert store.read_json(rel, "summary.json")["val_loss"] == pytest.approx(t.val_loss)
    assert res.best_config.train.lr == pytest.approx(res.best_params["train.lr"])

    committed = store.manifest(f"tune/{cfg.key}")
    assert "results.json" in committed.files and any(
        n.endswith("experiment_state.json") or "result.json" in n for n in committed.files
    )
    reports = _reports(res.experiment_uri)
    assert len(reports) == 2
    for rows in reports.values():  # evaluations at steps 10 and 20 from the trainer, then the final summary
        assert [r.get("step") for r in rows[:2]] == [10, 20] and rows[-1]["final"] == 1

    again = tune_pretrain(cfg)  # same search: every trial's run is a cache hit, nothing retrains
    assert {t.run_uri for t in again.trials} == {t.run_uri for t in res.trials}
    assert again.best_val_loss == pytest.approx(res.best_val_loss)


@pytest.mark.slow
def test_worker_group_trial_reports_through_tune_report_callback(ray_local, store_uri):
    base = tiny_pretrain_config(store_uri, max_steps=20, eval_every=10)
    base.compute.launcher = "ray_train"  # a Train V2 worker group per trial
    res = tune_pretrain(
        PretrainSearchConfig(base=base, num_samples=1, space={"train.lr": {"low": 1e-3, "high": 3e-3}})
    )
    (rows,) = _reports(res.experiment_uri).values()
    assert [r.get("step") for r in rows[:2]] == [10, 20] and rows[-1]["final"] == 1
    assert rows[-1]["val_loss"] == pytest.approx(res.best_val_loss)


def test_a_search_over_an_unknown_field_names_it(store_uri):
    with pytest.raises((ValidationError, ValueError), match="train.lrr"):
        PretrainSearchConfig(
            base=tiny_pretrain_config(store_uri), space={"train.lrr": {"low": 1e-4, "high": 1e-2}}
        )
    with pytest.raises(ValidationError, match="low < high"):
        PretrainSearchConfig(
            base=tiny_pretrain_config(store_uri), space={"train.lr": {"low": 1e-2, "high": 1e-4}}
        )


@pytest.mark.slow
def test_search_on_an_s3_store_keeps_tune_results_there(ray_local, s3_store_cfg):
    from asymptote.store import Store

    base = tiny_pretrain_config(s3_store_cfg.uri, max_steps=10, eval_every=10)
    base.store = s3_store_cfg
    cfg = PretrainSearchConfig(base=base, num_samples=1, space={"train.lr": {"low": 1e-3, "high": 3e-3}})
    res = tune_pretrain(cfg)
    store = Store(s3_store_cfg)
    assert res.results_uri.startswith("s3://") and res.experiment_uri.startswith("s3://")
    committed = store.manifest(f"tune/{cfg.key}")
    trial_results = [n for n in committed.files if n.endswith("/result.json")]
    assert len(trial_results) == 1  # Tune's own records, written to S3 by Ray and covered by the manifest
    rows = [json.loads(line) for line in store.read(f"tune/{cfg.key}", trial_results[0]).splitlines()]
    assert rows[-1]["final"] == 1 and rows[-1]["val_loss"] == pytest.approx(res.best_val_loss)
    assert store.has(store.relpath(res.best_run_uri))
