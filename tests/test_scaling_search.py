"""The recipe search on Ray Tune: the searchers' logic on their own (real Optuna / BayesOpt, no
training), then real Tune searches on a real local Ray: certified, sampled then certified, and a
search whose driver is killed and that resumes from its experiment in the store."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ray import tune

from asymptote.config import DataConfig, ModelConfig, StoreConfig, TrainConfig
from asymptote.scaling import certified
from asymptote.search_space import Point, SearchGrid, neighbours
from asymptote.tuning.search import SearchSpec, run_search
from asymptote.tuning.searchers import METRIC, SAMPLER_BUILDERS, CertifiedSearch, DistinctPoints

GRID = SearchGrid(lr=[3e-3, 1e-2, 3e-2], weight_decay=[0.1, 0.8], epochs=[1, 2])


def spec_for(store_uri: str, data_rel: str = "data/none", **kw) -> SearchSpec:
    fields = dict(
        name="t",
        model=ModelConfig(n_layer=1, n_head=2, d_model=16, d_ff=32, block_size=16),
        data=DataConfig(max_train_tokens=3000),
        data_artifact=data_rel,
        train=TrainConfig(
            batch_size=8, warmup_steps=2, eval_every=10**6, log_every=10**6, checkpoint_every=10**6
        ),
        grid=GRID,
        axes=("epochs", "lr", "weight_decay"),
        start=Point(3e-3, 0.1, 1),
        store=StoreConfig(uri=store_uri),
    )
    return SearchSpec(**(fields | kw))


def surface(p: Point) -> float:
    """A synthetic loss with its minimum at lr=1e-2, wd=0.8, epochs=2."""
    return 3.0 + abs(math.log10(p.lr / 1e-2)) + (0.8 - p.weight_decay) + (2 - p.epochs) * 0.3


def drive(searcher, spec: SearchSpec, budget: int = 50) -> list[Point]:
    """Tune's side of the protocol: ask for all suggestions that are ready, then complete them."""
    seen, n = [], 0
    while n < budget:
        batch = []
        while (config := searcher.suggest(f"trial{n}")) not in (None, "FINISHED"):
            batch.append((f"trial{n}", spec.point(config)))
            n += 1
        if not batch:
            return seen
        for tid, point in batch:
            seen.append(point)
            searcher.on_trial_complete(tid, {METRIC: surface(point)})
    return seen


def test_certified_searcher_proposes_neighbour_batches_until_certified(tmp_path):
    spec = spec_for(str(tmp_path))
    searcher = CertifiedSearch(spec)
    assert searcher.suggest("a") == spec.indices(spec.start) and searcher.suggest("b") is None  # waits
    searcher.on_trial_complete("a", {METRIC: surface(spec.start)})
    batch = [searcher.suggest(f"n{i}") for i in range(3)]
    assert sorted(map(spec.point, batch)) == sorted(neighbours(spec.start, GRID, spec.axes))
    searcher.save(str(tmp_path / "state.pkl"))  # resume mid-batch: the running trials are remembered
    again = CertifiedSearch(spec)
    again.restore(str(tmp_path / "state.pkl"))
    for i, config in enumerate(batch):
        again.on_trial_complete(f"n{i}", {METRIC: surface(spec.point(config))})
    drive(again, spec)
    best = again.cd.best()
    assert best == Point(1e-2, 0.8, 2) and certified(best, again.cd.results, GRID, spec.axes)
    assert again.suggest("late") == "FINISHED"


@pytest.mark.parametrize("sampler", ["optuna", "bayesopt"])
def test_sampled_points_snap_to_the_grid_and_never_repeat(tmp_path, sampler):
    spec = spec_for(str(tmp_path), sampler=sampler)
    inner, space = SAMPLER_BUILDERS[sampler](spec)
    searcher = DistinctPoints(inner, spec)
    searcher.set_search_properties(METRIC, "min", space)
    # optuna: past the grid's size, so repeats must be answered; bayesopt refits its GP per proposal: fewer
    seen = drive(searcher, spec, budget=GRID.size(spec.axes) + 2 if sampler == "optuna" else 5)
    assert seen[0] == spec.start  # the start is evaluated first
    assert len(seen) == len(set(seen)) and all(p.lr in GRID.lr and p.epochs in GRID.epochs for p in seen)
    assert set(searcher.known) == set(seen)  # repeats were answered from known losses, not trained
    searcher.save(str(tmp_path / "s.pkl"))
    restored = DistinctPoints(SAMPLER_BUILDERS[sampler](spec)[0], spec)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.known == searcher.known


def _prepared(store) -> str:
    from asymptote.shards import prepare_dataset

    return prepare_dataset(DataConfig(max_train_tokens=3000), store)


def finished_runs(store) -> list[str]:
    """Committed runs (runs/<key>), not the checkpoints committed inside unfinished ones."""
    return [rel for rel in store.artifacts("runs") if rel.count("/") == 1]


def _created(store, rels) -> dict[str, str]:
    return {
        r: store.manifest(r).created + store.manifest(r).files["model.safetensors"]["sha256"] for r in rels
    }


@pytest.mark.slow
def test_certified_tune_search_trains_each_point_once_as_a_run(ray_local, store_uri, store):
    spec = spec_for(store_uri, _prepared(store), axes=("epochs", "lr"))
    res = run_search(spec)
    assert res.certified and res.best["lr"] == min(res.results, key=lambda r: r["loss"])["lr"]
    for row in res.results:  # every trial is an ordinary committed run with the point's settings
        config = json.loads(store.read(row["run"], "config.json"))
        assert (config["train"]["lr"], config["train"]["epochs"]) == (row["lr"], row["epochs"])
        assert store.read_json(row["run"], "summary.json")["val_loss"] == pytest.approx(row["loss"])
    assert spec.job(Point(row["lr"], row["weight_decay"], row["epochs"])).run_rel == row["run"]
    before = _created(store, finished_runs(store))
    again = run_search(spec)  # the finished search answers from its committed results
    assert again.results == res.results and _created(store, finished_runs(store)) == before


@pytest.mark.slow
def test_optuna_then_certification(ray_local, store_uri, store):
    spec = spec_for(store_uri, _prepared(store), sampler="optuna", trials=3, axes=("epochs", "lr"))
    res = run_search(spec)
    sampled = store.read_json(f"{spec.rel}/optuna", "results.json")
    assert len(sampled) <= 3 and len({(r["lr"], r["epochs"]) for r in sampled}) == len(sampled)
    assert res.certified and len(res.results) >= len(sampled)


DRIVER = """
import sys
from asymptote.infra.cluster import ray_session
from asymptote.tuning.search import SearchSpec, run_search
spec = SearchSpec.model_validate_json(open(sys.argv[1]).read())
with ray_session(num_cpus=2):
    run_search(spec)
"""


@pytest.mark.slow
def test_search_resumes_after_its_driver_is_killed(ray_local, store_uri, store, tmp_path):
    spec = spec_for(
        store_uri, _prepared(store), axes=("epochs", "lr"), data=DataConfig(max_train_tokens=6000)
    )  # runs long enough to kill mid-search
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    driver = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "spec.json")],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    experiment = Path(store.path(spec.rel, "tune", "ray", "certify"))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (
            finished_runs(store) and list(experiment.glob("experiment_state*"))
        ):
            time.sleep(0.5)
        assert finished_runs(store), "the driver finished no run before the deadline"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, nothing else
        driver.wait()
    done_before = _created(store, finished_runs(store))
    assert not store.has(f"{spec.rel}/certify")  # the search had not finished
    assert tune.Tuner.can_restore(str(experiment))
    res = run_search(spec)  # restores the Tune experiment from the store and finishes it
    assert res.certified and len(res.results) > len(done_before)
    after = _created(store, finished_runs(store))
    assert {k: v for k, v in after.items() if k in done_before} == done_before  # nothing finished retrains
    assert set(done_before) <= {r["run"] for r in res.results}


def test_a_spec_off_the_grid_names_the_axis(tmp_path):
    with pytest.raises(ValueError, match="start lr=0.005 is not on the grid"):
        spec_for(str(tmp_path), start=Point(5e-3, 0.1, 1))
    with pytest.raises(ValueError, match="unknown; allowed: epochs, lr, weight_decay"):
        spec_for(str(tmp_path), axes=("epochs", "warmup"))
