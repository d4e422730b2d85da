"""The training loop without Ray: param groups, schedules, resume bit for bit, gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch

from asymptote.config import ComputeConfig, DataConfig, ModelConfig, StoreConfig, TrainConfig
from asymptote.dist import DistEnv
from asymptote.job import build_trainer, make_job, run_job
from asymptote.model import Decoder
from asymptote.optim import param_groups
from asymptote.schedules import make_schedule
from asymptote.shards import prepare_dataset


def test_weight_decay_skips_norms_and_embeddings():
    model = Decoder(ModelConfig(n_layer=1, n_head=2, d_model=16, d_ff=24, block_size=8))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.tok_emb.weight for p in no_decay["params"])
    assert all(p.dim() == 2 for p in decay["params"]) and not any(
        p is model.tok_emb.weight for p in decay["params"]
    )
    assert any(p is model.norm.weight for p in no_decay["params"])


def test_cosine_warms_up_then_decays_to_floor():
    lr = make_schedule("cosine", 1.0, total=110, warmup=10, floor=0.1)
    assert lr(0) == pytest.approx(0.1) and lr(9) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr(110) == pytest.approx(0.1)


def test_replay_holds_last_value():
    lr = make_schedule("replay", 1.0, 5, 0, 0, table=[0.3, 0.2, 0.1])
    assert [lr(s) for s in range(5)] == [0.3, 0.2, 0.1, 0.1, 0.1]


def _job(store, **train):
    data = DataConfig(max_train_tokens=50_000)
    rel = prepare_dataset(data, store)
    train = {
        "max_steps": 24,
        "batch_size": 8,
        "warmup_steps": 4,
        "eval_every": 12,
        "eval_windows": 16,
        "log_every": 4,
        "checkpoint_every": 8,
        "lr": 3e-3,
    } | train
    return make_job(
        name="t",
        model=ModelConfig(preset="cpu-0.1m"),
        data=data,
        train=TrainConfig(**train),
        data_artifact=rel,
        store=StoreConfig(uri=store.uri()),
    )


def test_resume_continues_the_same_curve(tmp_path):
    from asymptote.store import Store

    torch.set_num_threads(1)
    a, b = Store(str(tmp_path / "a")), Store(str(tmp_path / "b"))
    straight = run_job(_job(a), DistEnv(), lambda r: None)
    # Interrupted twin: stop after step 16 by running a shorter job with the same key-defining fields.
    interrupted = _job(b)
    trainer, total, _ = build_trainer(interrupted, b, DistEnv())
    from asymptote.job import StoreCheckpoints
    from asymptote.trainer import fit

    ckpt = StoreCheckpoints(b, interrupted, DistEnv())
    lr = make_schedule("cosine", 3e-3, total, 4, 0.0)
    fit(trainer, lambda s: lr(s) if s < 16 else float("nan"), 16, lambda r: None, ckpt)
    assert ckpt.steps()[-1] == 16
    resumed = run_job(interrupted, DistEnv(), lambda r: None)
    assert resumed["resumed"] and resumed["steps"] == 24
    assert resumed["val_loss"] == straight["val_loss"]  # bit for bit on CPU
    assert resumed["train_loss"] == straight["train_loss"]


def test_gradient_accumulation_matches_full_batch(tmp_path):
    from asymptote.store import Store

    torch.set_num_threads(1)
    full = run_job(_job(Store(str(tmp_path / "a")), max_steps=6), DistEnv(), lambda r: None)
    job = _job(Store(str(tmp_path / "b")), max_steps=6)
    job = job.model_copy(update={"compute": ComputeConfig(micro_batch_size=2)})
    accum = run_job(job, DistEnv(), lambda r: None)
    assert accum["val_loss"] == pytest.approx(full["val_loss"], abs=1e-4)


# ----------------------------------------------------------------------------- the GPU path's fixes


def test_window_counts_step_time_and_leaves_out_paused_time():
    import time

    from asymptote.trainer import Window

    env = DistEnv()
    window = Window(tokens_per_step=100)
    time.sleep(0.2)  # a "step"
    window.add(torch.tensor(2.0))
    with window.paused(env):  # an evaluation or a checkpoint
        time.sleep(0.4)
    out = window.flush(env)
    assert out["train_loss"] == 2.0
    assert 250 < out["tok_per_s"] <= 100 / 0.2  # 0.2 s counted, not 0.6 s
    time.sleep(0.1)  # the next window starts at the flush
    window.add(torch.tensor(4.0))
    second = window.flush(env)
    assert second["train_loss"] == 4.0 and second["tok_per_s"] <= 100 / 0.1


def test_unwrap_sees_through_torch_compile():
    from asymptote.checkpoint import save_weights, unwrap
    from asymptote.job import compile_if

    model = Decoder(ModelConfig(preset="cpu-0.1m"))
    compiled = compile_if(model, True)  # compiles lazily: nothing runs here
    assert compiled is not model and unwrap(compiled) is model and compile_if(model, False) is model
    save_weights(compiled, "/dev/null")  # keys of the bare module (no _orig_mod. prefix)
    assert set(unwrap(compiled).state_dict()) == set(model.state_dict())


def test_run_summary_reports_peak_memory(tmp_path):
    store = StoreConfig(uri=str(tmp_path / "store"))
    data = DataConfig(max_train_tokens=20_000)
    from asymptote.store import Store

    rel = prepare_dataset(data, Store(store))
    train = TrainConfig(max_steps=2, batch_size=4, warmup_steps=1, eval_windows=4)
    job = make_job(
        model=ModelConfig(preset="cpu-0.1m"), data=data, train=train, data_artifact=rel, store=store
    )
    summary = run_job(job, DistEnv(), lambda r: None)
    assert 0 < summary["peak_mem_gb"] < 64 and math.isfinite(summary["peak_mem_gb"])


def test_checkpoint_written_in_the_background_holds_the_state_at_save_time(tmp_path):
    from asymptote.checkpoint import STATE, WEIGHTS, load_state, load_weights
    from asymptote.job import StoreCheckpoints
    from asymptote.store import Store

    store = Store(str(tmp_path / "s"))
    job = _job(store)
    trainer, _, _ = build_trainer(job, store, DistEnv())
    trainer.train_step(1e-3)
    expected = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ckpt = StoreCheckpoints(store, job, DistEnv())
    ckpt.save(trainer)
    for _ in range(3):  # training goes on (updating parameters in place) while the write may be in flight
        trainer.train_step(1e-3)
    ckpt.wait()
    folder = ckpt.latest()
    saved = load_weights(folder / WEIGHTS)
    assert ckpt.steps() == [1] and load_state(folder / STATE)["step"] == 1
    assert all(torch.equal(saved[k], v) for k, v in expected.items())
    assert not torch.equal(saved["tok_emb.weight"], trainer.model.tok_emb.weight.detach())
