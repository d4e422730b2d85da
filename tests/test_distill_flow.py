"""The distillation flow end to end on real local Ray and a real Prefect API, at a tiny scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asymptote.checkpoint import WEIGHTS, save_weights
from asymptote.config import ConfigError, DataConfig, ModelConfig, build
from asymptote.distill_config import SamplingConfig
from asymptote.flows.distillation import DistillConfig, distill
from asymptote.model import Decoder
from asymptote.shards import load_dataset, prepare_dataset
from asymptote.tasks.distill import sample_sequences

TINY_MODEL = {"n_layer": 1, "n_head": 2, "d_model": 32, "d_ff": 64, "block_size": 32}
TRAIN = {
    "max_steps": 24,
    "batch_size": 8,
    "warmup_steps": 4,
    "eval_every": 24,
    "eval_windows": 16,
    "lr": 3e-3,
    "log_every": 8,
    "checkpoint_every": 24,
}


def tiny_config(store_uri: str, **sections) -> DistillConfig:
    return build(
        DistillConfig,
        {
            "name": "tiny",
            "model": TINY_MODEL,
            "data": {"max_train_tokens": 50_000},
            "teacher": {"n_members": 2, "train": TRAIN | {"weight_decay": 0.5}},
            "sampling": {"n_sequences": 48, "batch_size": 16},
            "student": {"methods": ["sequence", "synthetic_only", "token_kl", "self"], "train": TRAIN},
            "store": {"uri": store_uri},
            **sections,
        },
    )


def _task_states(flow_run_id: str) -> dict[str, set[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    client = get_client(sync_client=True)
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    states: dict[str, set[str]] = {}
    for run in runs:
        states.setdefault(run.name.rsplit("-", 1)[0], set()).add(run.state.name)
    return states


def _artifacts(store) -> dict[str, str]:
    return {rel: store.manifest(rel).created for rel in store.artifacts("runs") + store.artifacts("data")}


@pytest.mark.slow
def test_flow_distils_reports_and_caches(ray_local, prefect_api, store_uri, store):
    res = distill(tiny_config(store_uri))
    members = res.teachers.members
    assert len(members) == 2 and res.teachers.single == members[0] and res.teachers.trained_here
    assert res.single_loss == res.member_losses[0] and len(res.ensemble_curve) == 2
    assert set(res.students) == {"sequence", "synthetic_only", "token_kl", "self"}
    gain = res.single_loss - res.ensemble_loss
    for s in res.students.values():
        assert math.isfinite(s.val_loss) and s.val_loss < 5.5  # below ln(256): every student learned
        expected = (res.single_loss - s.val_loss) / gain if gain > 0 else None
        assert s.retained == pytest.approx(expected)
        assert s.val_loss == pytest.approx(store.read_json(s.run.rel, "summary.json")["val_loss"], rel=1e-4)
    configs = {m: store.read_json(s.run.rel, "config.json") for m, s in res.students.items()}
    assert configs["token_kl"]["objective"]["teachers"] == members
    assert configs["sequence"]["batches"] == {
        "kind": "mixture",
        "synthetic": res.synthetic["ensemble"].rel,
        "weight": 0.75,
    }
    assert configs["synthetic_only"]["batches"]["weight"] == 1.0
    assert configs["self"]["batches"]["synthetic"] == res.synthetic["single"].rel
    assert configs["sequence"]["train"]["weight_decay"] == 0.1
    train, val, meta = load_dataset(store, res.synthetic["ensemble"].rel)
    assert meta["sequence_length"] == 33 and len(train) + len(val) == 48 * 33 and meta["teachers"] == members
    report = store.relpath(res.report_uri).rsplit("/", 1)[0]
    assert {"report.md", "compare.png"} <= set(store.manifest(report).files)
    assert "retained" in store.read(report, "report.md").decode()

    before = _artifacts(store)
    again = distill(tiny_config(store_uri))
    assert _artifacts(store) == before  # nothing trained, sampled or rewritten
    assert again.model_dump(exclude={"flow_run_id", "report_uri"}) == res.model_dump(
        exclude={"flow_run_id", "report_uri"}
    )
    states = _task_states(again.flow_run_id)
    assert {"train", "sample", "ensemble-eval"} <= set(states)
    assert all(s == {"Cached"} for s in states.values()), states

    # Teachers given by URI: the same token-level student, taken from the cache.
    given = tiny_config(
        store_uri,
        teacher={"members": [store.uri(m) for m in members]},
        student={"methods": ["token_kl"], "train": TRAIN},
    )
    reused = distill(given)
    assert not reused.teachers.trained_here and reused.teachers.members == members
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


def test_bad_teachers_and_methods_are_named(store):
    with pytest.raises(ValueError, match=r"teacher.members\[1\]='runs/nope'"):
        store.model_ref("runs/nope", "teacher.members[1]")
    with pytest.raises(ConfigError, match="student.methods"):
        build(DistillConfig, {"student": {"methods": ["sequence", "telepathy"]}})
