"""The scaling-study flow end to end at a tiny scale on real local Ray and a real Prefect API:
certified searches, members trained by the member recipe, streamed ensemble losses, fits, report,
and a second call that trains nothing."""

from __future__ import annotations

import json
import uuid

import pytest

from asymptote.flows.scaling import ScalingStudyConfig, scaling_study
from asymptote.recipes import resolve

TINY = {
    "sizes": [
        {"n_layer": 1, "n_head": 2, "d_model": d, "d_ff": 2 * d, "block_size": 32} for d in (16, 24, 32)
    ],
    "budget": 3000,
    "train": {
        "batch_size": 8,
        "warmup_steps": 2,
        "eval_every": 10**6,
        "log_every": 10**6,
        "checkpoint_every": 10**6,
    },
    "search": {
        "grid": {"lr": [1e-2, 3e-2], "weight_decay": [0.1, 0.8], "epochs": [1, 2]},
        "start": {"lr": 3e-2, "weight_decay": 0.8, "epochs": 2},
    },
    "ensemble": {"members": 3},
    "efficiency": {"budgets": [1500, 6000], "sizes": [0]},
    "fits": {"n_boot": 200},
}


def task_states(flow_run_id: str) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])), limit=200
        )
    states: dict[str, list[str]] = {}
    for r in runs:
        states.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
    return states


def manifests(store) -> dict[str, str]:
    return {rel: store.manifest(rel).created for rel in store.artifacts("runs")}


@pytest.mark.slow
def test_study_end_to_end_then_fully_cached(ray_local, prefect_api, store_uri, store):
    cfg = resolve(ScalingStudyConfig, base=TINY | {"store": {"uri": store_uri}})
    res = scaling_study(cfg)

    assert len(res.searches) == 3 * 2 + 2 and all(r.certified for r in res.searches)
    assert {r.budget for r in res.searches if r.size == "L1-d16"} == {1500, 3000, 6000}
    for r in res.searches:  # the standard recipe never leaves its fixed weight decay
        assert r.recipe == "regularized" or r.best["weight_decay"] == 0.1
    for row in res.searches:
        assert store.read_json(row.run, "summary.json")["val_loss"] == pytest.approx(row.loss)

    best = {r.size: r.best for r in res.searches if r.recipe == "regularized"}
    members = [json.loads(store.read(rel, "config.json")) for rel in res.runs]
    members = [m for m in members if m["train"]["train_seed"] > 0]
    assert len(members) == 3 * 3
    for m in members:  # epochs doubled, weight decay halved, train_seed = data_seed = k
        b = best[f"L1-d{m['model']['d_model']}"]
        t = m["train"]
        assert (t["epochs"], t["weight_decay"], t["lr"]) == (2 * b["epochs"], b["weight_decay"] / 2, b["lr"])
        assert t["data_seed"] == t["train_seed"] in (1, 2, 3)

    for s in res.study.sizes:
        assert len(s.ensemble["logits"]) == len(s.ensemble["probs"]) == 3
        assert s.ensemble["logits"][0] == pytest.approx(s.ensemble["probs"][0], rel=1e-5)  # one member: equal
        assert s.ensemble["logits"][0] == pytest.approx(s.members[0], rel=1e-5)
    for name in ("standard_N", "regularized_N", "standard_D", "joint_N"):
        fit = res.analysis.fits[name]
        assert fit.ok, fit.reason
        lo, hi = fit.ci()
        assert lo <= fit.asymptote <= hi
    assert set(res.analysis.checks) == {
        "wd_overfit_fixed",
        "ensemble_monotone_in_k",
        "joint_below_regularized",
    }
    assert set(res.study.sweep) == {"standard", "regularized"}
    assert all(len(curve) == 2 for curve in res.study.sweep.values())

    report = store.relpath(res.report_uri).rsplit("/", 1)[0]
    files = set(store.manifest(report).files)
    assert {
        "report.md",
        "loss-vs-params.png",
        "loss-vs-members.png",
        "loss-vs-epochs.png",
        "study.json",
    } <= files
    markdown = store.read(report, "report.md").decode()
    assert "## Checks" in markdown and "![loss-vs-params.png](loss-vs-params.png)" in markdown

    before = manifests(store)
    again = scaling_study(cfg)  # same config: every run and evaluation comes from the cache
    assert manifests(store) == before
    states = task_states(again.flow_run_id)
    assert states["train"] and set(states["train"]) == {"Cached"}
    assert set(states["ensemble-eval"]) == {"Cached"}
    assert again.study == res.study


def test_bad_config_names_the_field(store_uri):
    from asymptote.config import ConfigError

    with pytest.raises(ConfigError, match="sweep_size"):
        resolve(ScalingStudyConfig, base=TINY | {"sweep_size": 5})
    with pytest.raises(ConfigError, match="lr=0.02 is not on the grid"):
        resolve(ScalingStudyConfig, base=TINY | {"search": TINY["search"] | {"start": {"lr": 0.02}}})
    with pytest.raises(ConfigError, match="repeats the study budget"):
        resolve(ScalingStudyConfig, base=TINY | {"efficiency": {"budgets": [3000]}})


@pytest.mark.slow
def test_tune_engine_runs_are_the_flows_runs(ray_local, prefect_api, store_uri, store):
    """Searches run as Ray Tune experiments; the flow then asks for the same points (certification,
    epoch sweep) through its cached Prefect tasks and finds the runs Tune trained: none trains twice."""
    one = TINY | {
        "sizes": TINY["sizes"][:1],
        "efficiency": {"budgets": []},
        "ensemble": {"members": 2},
        "search": TINY["search"] | {"engine": "tune"},
    }
    res = scaling_study(resolve(ScalingStudyConfig, base=one | {"store": {"uri": store_uri}}))
    assert [r.certified for r in res.searches] == [True, True]
    tuned = {}
    for rel in store.artifacts("searches"):
        if rel.endswith("/certify"):
            committed = store.manifest(rel).created
            tuned |= {row["run"]: committed for row in store.read_json(rel, "results.json")}
    assert {r.run for r in res.searches} <= set(tuned)
    for run, committed in tuned.items():  # trained inside a trial, before its search committed; never again
        assert store.manifest(run).created <= committed
    assert not res.analysis.fits["regularized_N"].ok  # one size cannot fit L(N); the study still reports
