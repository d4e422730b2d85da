"""The distillation flow end to end on real local Ray and a real Prefect API, at a tiny scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import task_runs

from asymptote.checkpoint import WEIGHTS, save_weights
from asymptote.config import DataConfig, ModelConfig, build
from asymptote.distill_config import DistillConfig, SamplingConfig
from asymptote.flows.distillation import distill
from asymptote.model import Decoder
from asymptote.shards import load_dataset, prepare_dataset
from asymptote.tasks.distill import sample_sequences

TINY_MODEL = {"n_layer": 1, "n_head": 2, "d_model": 32, "d_ff": 64, "block_size": 32}
TEMPLATE = {
    "batch_size": 8,
    "warmup_steps": 4,
    "eval_windows": 16,
    "lr": 3e-3,
    "log_every": 8,
    "checkpoint_every": 1000,
}


def tiny_config(store_uri: str, **sections) -> DistillConfig:
    return build(
        DistillConfig,
        {
            "name": "tiny",
            "model": TINY_MODEL,
            "budget": 6_000,
            "train": TEMPLATE,
            "search": {
                "grid": {"lr": [3e-3], "weight_decay": [0.1, 0.8], "epochs": [1]},
                "start": {"lr": 3e-3, "weight_decay": 0.8, "epochs": 1},
            },
            "ensemble": {"members": 2},
            "sampling": {"batch_size": 64},
            "student": {
                "grid": {
                    "epochs": [1, 2],
                    "weight_decay": [0.1],
                    "synthetic": [0.5],
                    "mix": [0.5],
                    "alpha": [1.0],
                },
                "curve_points": 3,
            },
            "evaluation": {"n_boot": 100},
            "store": {"uri": store_uri},
            **sections,
        },
    )


def _task_states(flow_run_id: str) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for run in task_runs(flow_run_id):
        states.setdefault(run.name.rsplit("-", 1)[0], set()).add(run.state.name)
    return states


def _artifacts(store) -> dict[str, str]:
    return {rel: store.manifest(rel).created for rel in store.artifacts("runs") + store.artifacts("data")}


@pytest.mark.slow
def test_flow_distils_reports_and_caches(ray_local, prefect_api, store_uri, store):
    res = distill(tiny_config(store_uri, seeds=2, control="combined"))
    t = res.teachers
    assert len(t.members) == 2 and t.trained_here and t.certified
    # The baseline is searched over the students' span (epochs up to theirs), not only its own grid.
    assert t.grid["epochs"] == [1, 2] and 2 <= t.search_points <= 4
    edges = [a for a, v in t.grid.items() if len(v) > 1 and t.single_point[a] in (v[0], v[-1])]
    assert t.at_edge == edges  # reported whether or not the grid may grow (edges.extend is off here)
    # Seeds: two of the single model, each student and the control; the ensemble is one of its members.
    assert res.seeds == {
        "single": 2,
        "ensemble": 1,
        "sequence": 2,
        "token_kl": 2,
        "combined": 2,
        "control": 2,
    }
    assert t.seed_runs[0] == t.single and len(set(t.seed_runs)) == 2
    c = res.control
    assert c.method == "combined" and c.point == res.students["combined"].point and len(set(c.seed_runs)) == 2
    for rel in c.seed_runs:  # real text only, the combined student's steps
        control_cfg = store.read_json(rel, "config.json")
        assert (control_cfg.get("objective") or {}).get("kind", "ce") == "ce"
        assert (control_cfg.get("batches") or {}).get("kind") != "mixture"
        assert store.read_json(rel, "summary.json")["steps"] == res.students["combined"].steps == c.steps
    assert res.single_loss == pytest.approx(np.mean(res.seed_losses["single"]))
    assert res.paper_method == "sequence" and "p_direction" in res.figures["control"].model_dump()
    single_train = store.read_json(t.single, "config.json")["train"]
    assert single_train["weight_decay"] == t.single_point["weight_decay"]
    for k, m in enumerate(t.members, start=1):  # the paper's member recipe, seed = member index
        train = store.read_json(m, "config.json")["train"]
        assert (
            train["epochs"] == 2 * single_train["epochs"]
            and train["weight_decay"] == single_train["weight_decay"] / 2
        )
        assert train["train_seed"] == train["data_seed"] == k
    assert res.split == "test" and set(res.students) == {"sequence", "token_kl", "combined"}
    assert math.isfinite(res.single_loss) and math.isfinite(res.ensemble_loss) and res.test_windows > 10
    assert res.gain == pytest.approx(res.single_loss - res.ensemble_loss, abs=1e-9)
    for s in res.students.values():
        assert s.certified and s.points == 2 and math.isfinite(s.test_loss) and s.test_loss < 5.6
        assert s.val_loss == pytest.approx(store.read_json(s.run.rel, "summary.json")["val_loss"])
        assert len(s.curve) >= 3 and s.search_steps > s.steps > 0
        assert s.seed_runs[0] == s.run.rel and len(set(s.seed_runs)) == 2
        assert s.test_loss == pytest.approx(np.mean(s.seed_losses))
        if res.gain_resolved:
            assert s.retained == pytest.approx((res.single_loss - s.test_loss) / res.gain)
            assert s.retained_ci[0] <= s.retained <= s.retained_ci[1]
        else:
            assert s.retained is None
    configs = {m: store.read_json(s.run.rel, "config.json") for m, s in res.students.items()}
    assert configs["token_kl"]["objective"]["teachers"] == t.members
    assert configs["combined"]["objective"]["kind"] == "token_kl"
    for m in ("sequence", "combined"):
        assert configs[m]["batches"] == {
            "kind": "mixture",
            "synthetic": res.synthetic.rel,
            "weight": 0.5,
            "synthetic_tokens": (3_000 // 33) * 33,
        }
    train, val, meta = load_dataset(store, res.synthetic.rel)
    assert meta["sequence_length"] == 33 and len(train) >= 3_000 // 33 * 33 and meta["teachers"] == t.members
    assert res.synthetic_tokens == len(train) + len(val)
    report = store.relpath(res.report_uri).rsplit("/", 1)[0]
    assert {"report.md", "compare.png", "curves.png"} <= set(store.manifest(report).files)
    text = store.read(report, "report.md").decode()
    assert "test split" in text and "Students, best first" in text

    before = _artifacts(store)
    again = distill(tiny_config(store_uri, seeds=2, control="combined"))
    assert _artifacts(store) == before  # nothing trained, sampled or rewritten
    assert again.model_dump(exclude={"flow_run_id", "report_uri"}) == res.model_dump(
        exclude={"flow_run_id", "report_uri"}
    )
    states = _task_states(again.flow_run_id)
    assert {"train", "sample", "ensemble-eval", "test-eval"} <= set(states)
    assert all(s == {"Cached"} for s in states.values()), states

    # Teachers given by URI: the same token-level student, taken from the cache.
    given = tiny_config(
        store_uri,
        seeds=2,
        teacher={"members": [store.uri(m) for m in t.members], "single": store.uri(t.single)},
        student=tiny_config(store_uri).student.model_dump() | {"methods": ["token_kl"]},
    )
    reused = distill(given)
    assert not reused.teachers.trained_here and reused.teachers.members == t.members
    assert reused.students["token_kl"].run.key == res.students["token_kl"].run.key
    assert _artifacts(store) == before


def _commit_run(store, rel: str, seed: int) -> None:
    torch.manual_seed(seed)
    cfg = ModelConfig(**TINY_MODEL)
    with store.writer(rel, kind="run", meta={"model": cfg.model_dump()}) as folder:
        save_weights(Decoder(cfg), folder / WEIGHTS)


def test_sampling_job_is_the_same_on_any_number_of_workers(ray_local, store):
    data = prepare_dataset(DataConfig(max_train_tokens=20_000), store)
    for i in range(2):
        _commit_run(store, f"runs/m{i}", i)
    cfg = SamplingConfig(n_sequences=20, batch_size=6, seed=4)
    one = sample_sequences(store, ["runs/m0", "runs/m1"], data, cfg, 33, workers=1)
    two = sample_sequences(store, ["runs/m0", "runs/m1"], data, cfg, 33, workers=2)
    assert one.shape == (20, 33) and np.array_equal(one, two)
    assert not np.array_equal(one, sample_sequences(store, ["runs/m0"], data, cfg, 33, workers=2))


def test_bad_teachers_are_named(store):
    with pytest.raises(ValueError, match=r"teacher.members\[1\]='runs/nope'"):
        store.model_ref("runs/nope", "teacher.members[1]")
