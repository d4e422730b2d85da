"""The scaling-study flow end to end at a tiny scale on real local Ray and a real Prefect API:
certified searches, members trained by the member recipe, streamed ensemble losses, fits, report,
and a second call that trains nothing."""

from __future__ import annotations

import json

import pytest
from helpers import task_runs

from asymptote.flows.scaling import ScalingStudyConfig, scaling_study
from asymptote.planner import load_inputs
from asymptote.recipes import resolve
from asymptote.report_check import check, check_report

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
    runs = task_runs(flow_run_id)
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
    grid_wd = TINY["search"]["grid"]["weight_decay"]  # replicas sit on the grid; members halve its WD
    members = [
        m for m in members if m["train"]["train_seed"] > 0 and m["train"]["weight_decay"] not in grid_wd
    ]
    assert len(members) == 3 * 3
    for m in members:  # epochs doubled, weight decay halved, train_seed = data_seed = k
        b = best[f"L1-d{m['model']['d_model']}"]
        t = m["train"]
        assert (t["epochs"], t["weight_decay"], t["lr"]) == (2 * b["epochs"], b["weight_decay"] / 2, b["lr"])
        assert t["data_seed"] == t["train_seed"] in (1, 2, 3)

    for s in res.study.sizes:  # every weighted ensemble per test block: what the member bootstrap redraws
        assert len(s.multisets) == 19 and len(s.subsets) == 7 and sum(s.windows) > 0
        assert s.subsets["0,1,2"] == pytest.approx(s.ensemble["logits"][-1], rel=1e-5)
    for s in res.study.sizes:
        assert len(s.ensemble["logits"]) == len(s.ensemble["probs"]) == 3
        assert s.ensemble["logits"][0] == pytest.approx(s.ensemble["probs"][0], rel=1e-5)  # one member: equal
        assert s.ensemble["logits"][0] == pytest.approx(s.members[0], rel=1e-5)
    for name in ("standard_N", "regularized_N", "standard_D"):  # three points: fitted, not identified
        fit = res.analysis.fits[name]
        assert fit.ok and not fit.identified, fit
    assert res.figures["split"] == "test" and set(res.figures["claims"]) == set(res.analysis.claims)
    for s in res.study.sizes:  # every certified optimum replicated with seeds 1..2 (the default)
        assert len(s.standard) == len(s.regularized) == 2
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
    design = load_inputs(store).design  # what `asymptote plan` reads: each size's FLOPs and settings
    assert [s.label for s in design.sizes] == cfg.labels and design.tokens == cfg.tokens
    markdown = store.read(report, "report.md").decode()
    assert (
        "## Verdicts" in markdown
        and "test split" in markdown
        and "![loss-vs-params.png](loss-vs-params.png)" in markdown
    )
    contents = {name: store.read(report, name) for name in files}
    assert check_report(markdown, contents) == []  # asymptote.report_check: nothing contradicts
    assert check(res.figures) == [] and check(res.analysis) == []
    assert res.study.wd_grid == [0.1, 0.8]  # two values: every choice at an edge, so no verdict
    tuned = res.analysis.claims["tuned_wd_well_above_standard"]
    assert not tuned.supported and tuned.note.startswith("at grid edge")

    before = manifests(store)
    again = scaling_study(cfg)  # same config: every run and evaluation comes from the cache
    assert manifests(store) == before
    states = task_states(again.flow_run_id)
    assert states["train"] and set(states["train"]) == {"Cached"}
    assert set(states["ensemble-eval"]) == set(states["ensemble-multisets"]) == {"Cached"}
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


def _corpus(path, adversarial: bool) -> str:
    """A deterministic text; adversarial: its last 5% (the test split) replaced by bytes of the same
    length that no model trained on the rest can predict. Train and validation text are identical."""
    rng = __import__("random").Random(0)
    words = ["the", "king", "and", "queen", "of", "a", "castle", "went", "to", "see", "river", "night"]
    text = " ".join(rng.choice(words) for _ in range(12_000))
    if adversarial:
        cut = int(len(text) * 0.95)
        text = text[:cut] + "".join(chr(rng.randint(33, 126)) for _ in range(len(text) - cut))
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_selection_never_reads_the_test_split(ray_local, prefect_api, store_uri, tmp_path):
    """Two corpora that differ only in their test split: every choice (search optima, their val
    losses, the efficiency choice per budget) is the same, while the reported test losses differ."""
    small = TINY | {
        "sizes": TINY["sizes"][:2],
        "seeds": 2,
        "ensemble": {"members": 2},
        "efficiency": {"budgets": [1500], "sizes": [0, 1]},
        "data": {"val_fraction": 0.05, "test_fraction": 0.05},
        "fits": {"n_boot": 50},
    }
    results = []
    for adversarial in (False, True):
        source = _corpus(tmp_path / f"text-{adversarial}.txt", adversarial)
        cfg = resolve(
            ScalingStudyConfig,
            base=small | {"store": {"uri": store_uri}},
            overrides=[f"data.source={source}"],
        )
        results.append(scaling_study(cfg))
    plain, adv = results
    chosen = [
        [(r.size, r.recipe, r.budget, r.best, round(r.loss, 6), r.certified) for r in res.searches]
        for res in results
    ]
    assert chosen[0] == chosen[1]
    assert [s.regularized_wd for s in plain.study.sizes] == [s.regularized_wd for s in adv.study.sizes]
    assert sorted(plain.study.efficiency) == sorted(adv.study.efficiency)
    assert plain.study.split == adv.study.split == "test"
    for a, b in zip(plain.study.sizes, adv.study.sizes, strict=True):  # the test split was read, and differs
        assert min(b.regularized) > max(a.regularized) + 0.5
