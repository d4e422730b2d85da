"""Distillation losses and batch sources: KL maths, option validation, the synthetic/real mixture, wiring into run_job."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asymptote.checkpoint import WEIGHTS, save_weights
from asymptote.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from asymptote.dist import DistEnv
from asymptote.distill import (
    MixtureBatcher,
    TeacherCache,
    distill_loss,
    mixture_batches,
    soft_kl,
    token_kl_objective,
)
from asymptote.ensemble import Ensemble
from asymptote.job import make_job, run_job
from asymptote.model import Decoder, lm_loss
from asymptote.shards import load_dataset, prepare_dataset
from asymptote.synthetic import save_synthetic

TINY = ModelConfig(n_layer=1, n_head=2, d_model=16, d_ff=32, block_size=16)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _logits(*shape, seed=0) -> torch.Tensor:
    return 3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _one_hot_logprobs(targets: torch.Tensor, vocab: int) -> torch.Tensor:
    out = torch.full((*targets.shape, vocab), -math.inf)
    return out.scatter(-1, targets.unsqueeze(-1), 0.0)


# ----------------------------------------------------------------------------- token-level loss


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_kl_loss_equals_cross_entropy_for_a_one_hot_teacher(alpha):
    student = _logits(4, 8, 32)
    targets = torch.randint(0, 32, (4, 8), generator=torch.Generator().manual_seed(1))
    loss = distill_loss(student, _one_hot_logprobs(targets, 32), targets, temperature=1.0, alpha=alpha)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(lm_loss(student, targets).item(), rel=1e-6)


def test_kl_is_zero_for_an_identical_student_and_positive_otherwise():
    z = _logits(2, 5, 16)
    assert soft_kl(F.log_softmax(z, -1), z).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_kl(F.log_softmax(z, -1), _logits(2, 5, 16, seed=1)).item() > 0.1


def test_kl_matches_its_definition_at_a_temperature():
    teacher, student, T = _logits(3, 10, seed=2), _logits(3, 10, seed=3), 2.5
    p, q = F.softmax(teacher / T, -1), F.softmax(student / T, -1)
    expected = (p * (p.log() - q.log())).sum(-1).mean()
    assert soft_kl(F.log_softmax(teacher, -1), student, T).item() == pytest.approx(expected.item(), rel=1e-5)
    targets = torch.zeros(3, dtype=torch.long)
    mixed = distill_loss(student, F.log_softmax(teacher, -1), targets, T, alpha=0.3)
    ce = F.cross_entropy(student, targets)
    assert mixed.item() == pytest.approx((0.3 * T**2 * expected + 0.7 * ce).item(), rel=1e-5)


def test_kl_gradient_pulls_the_student_to_the_teacher():
    teacher, student = _logits(6, 12, seed=4), _logits(6, 12, seed=5).requires_grad_()
    soft_kl(F.log_softmax(teacher, -1), student).backward()
    expected = (F.softmax(student, -1) - F.softmax(teacher, -1)) / 6
    assert torch.allclose(student.grad, expected.detach(), atol=1e-6)


# ----------------------------------------------------------------------------- teachers and options


def _commit_run(store, rel: str, seed: int, cfg: ModelConfig = TINY) -> Decoder:
    torch.manual_seed(seed)
    model = Decoder(cfg)
    with store.writer(rel, kind="run", meta={"model": cfg.model_dump()}) as folder:
        save_weights(model, folder / WEIGHTS)
    return model.eval()


def _job(data_rel: str, store_uri: str, **fields):
    train = TrainConfig(
        max_steps=6,
        batch_size=4,
        warmup_steps=1,
        eval_every=6,
        log_every=3,
        checkpoint_every=3,
        eval_windows=8,
    )
    data = DataConfig(max_train_tokens=20_000)
    return make_job(
        name="t",
        model=TINY,
        data=data,
        train=train,
        data_artifact=data_rel,
        store={"uri": store_uri},
        **fields,
    )


@pytest.fixture
def data_rel(store):
    return prepare_dataset(DataConfig(max_train_tokens=20_000), store)


def test_token_kl_objective_averages_frozen_teachers(store, store_uri, data_rel):
    teachers = [_commit_run(store, f"runs/t{i}", i) for i in range(2)]
    job = _job(
        data_rel,
        store_uri,
        objective={"kind": "token_kl", "teachers": ["runs/t0", "runs/t1"], "temperature": 2.0, "alpha": 0.7},
    )
    objective = token_kl_objective(job, store, DistEnv())
    student, x = Decoder(TINY), torch.randint(0, 256, (3, 16))
    y = torch.roll(x, -1, 1)
    teacher_logp = F.log_softmax((teachers[0](x) + teachers[1](x)) / 2, -1)
    expected = distill_loss(student(x), teacher_logp, y, 2.0, 0.7)
    loss = objective(student, x, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    again = objective(student, x, y)  # the same windows again: the teachers' outputs come from the cache
    assert again.item() == pytest.approx(expected.item(), rel=1e-5)


class _CountingTeacher(torch.nn.Module):
    """A real frozen ensemble that counts the windows it is asked to predict."""

    def __init__(self, members):
        super().__init__()
        self.ensemble, self.rows = Ensemble(members).eval(), 0

    def forward(self, x):
        self.rows += len(x)
        return self.ensemble(x)


def test_teacher_cache_gives_the_teachers_outputs_and_skips_windows_seen_before():
    torch.manual_seed(0)
    teacher = _CountingTeacher([Decoder(TINY) for _ in range(2)])
    cache = TeacherCache(teacher, 2**30)
    seen = torch.randint(0, 256, (4, 16))
    assert torch.equal(cache(seen), teacher.ensemble(seen))
    assert teacher.rows == 4 and len(cache.entries) == 4
    mixed = torch.cat([seen[[2, 0]], torch.randint(0, 256, (3, 16)), seen[[2]]])
    got = cache(mixed)
    assert teacher.rows == 4 + 3, "only the three new windows reach the teachers"
    assert (cache.hits, cache.misses) == (3, 7)
    torch.testing.assert_close(got, teacher.ensemble(mixed), rtol=0, atol=1e-6)
    assert not got.requires_grad


def test_teacher_cache_keeps_no_more_than_its_budget_and_zero_turns_it_off():
    torch.manual_seed(1)
    teacher = _CountingTeacher([Decoder(TINY)])
    x = torch.randint(0, 256, (5, 16))
    one_window = 16 * TINY.vocab_size * 4  # float32 log-probabilities of one window
    cache = TeacherCache(teacher, 2 * one_window)
    cache(x)
    assert len(cache.entries) == 2 and cache.bytes == 2 * one_window
    torch.testing.assert_close(cache(x), teacher.ensemble(x), rtol=0, atol=1e-6)
    assert teacher.rows == 5 + 3, "the two kept windows are looked up, the other three recomputed"
    off = TeacherCache(teacher, 0)
    off(x), off(x)
    assert teacher.rows == 8 + 10 and not off.entries


@pytest.mark.parametrize(
    "objective, field",
    [
        ({"kind": "token_kl", "teachers": []}, "objective.teachers"),
        ({"kind": "token_kl", "teachers": ["runs/x"], "temperature": 0}, "objective.temperature"),
        ({"kind": "token_kl", "teachers": ["runs/x"], "alpah": 0.5}, "objective.alpah"),
    ],
)
def test_bad_objective_options_name_the_field(store, store_uri, data_rel, objective, field):
    with pytest.raises(ConfigError, match=field):
        token_kl_objective(_job(data_rel, store_uri, objective=objective), store, DistEnv())


def test_teacher_with_a_shorter_context_is_refused(store, store_uri, data_rel):
    _commit_run(store, "runs/short", 0, TINY.model_copy(update={"block_size": 8}))
    job = _job(data_rel, store_uri, objective={"kind": "token_kl", "teachers": ["runs/short"]})
    with pytest.raises(ValueError, match="objective.teachers: runs/short"):
        token_kl_objective(job, store, DistEnv())


# ----------------------------------------------------------------------------- the synthetic/real mixture


def _mixture(weight=0.75, world=1, rank=0, seed=0, n_seq=40, seq_len=17) -> MixtureBatcher:
    real = np.arange(3000) % 200 + 50  # ids 50..249
    synthetic = np.repeat(np.arange(n_seq) % 40, seq_len).astype(np.int64)  # sample i is all id i (< 40)
    return MixtureBatcher(real, synthetic, seq_len, weight, 16, 8, seed, rank=rank, world=world)


def test_mixture_takes_the_synthetic_fraction_in_aligned_whole_samples():
    batcher = _mixture(weight=0.75)
    counts = []
    for _ in range(10):
        x, y = batcher.next_batch()
        synthetic = x.max(1).values < 40
        assert torch.all(x[synthetic] == x[synthetic][:, :1])  # a window never straddles two samples
        assert torch.all(x[~synthetic] >= 50)
        counts.append(int(synthetic.sum()))
    assert sum(counts) == 60 and set(counts) == {6}
    rows = [_mixture(weight=0.3).synthetic_rows(i) for i in range(10)]  # 0.3 x 8 = 2.4 per batch
    assert set(rows) == {2, 3} and sum(rows) == 24


def test_mixture_is_deterministic_resumable_and_split_across_ranks():
    a, b = _mixture(seed=1), _mixture(seed=1)
    assert all(torch.equal(a.next_batch()[0], b.next_batch()[0]) for _ in range(12))  # crosses epochs
    state = a.state_dict()
    expected = [a.next_batch()[0] for _ in range(5)]
    resumed = _mixture(seed=1)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.next_batch()[0], e) for e in expected)
    assert not torch.equal(_mixture(seed=2).next_batch()[0], _mixture(seed=1).next_batch()[0])
    whole = _mixture(seed=1).next_batch()[0]
    halves = [_mixture(seed=1, world=2, rank=r).next_batch()[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)


def test_synthetic_only_and_short_samples():
    x, _ = _mixture(weight=1.0).next_batch()
    assert torch.all(x < 40)
    with pytest.raises(ValueError, match="block_size=16 needs at least 17"):
        _mixture(seq_len=12)


def test_synthetic_artifact_loads_like_a_corpus_and_feeds_a_run(store, store_uri, data_rel):
    sequences = np.random.default_rng(0).integers(0, 256, (40, 17)).astype(np.uint8)
    corpus_meta = store.manifest(data_rel).meta
    save_synthetic(
        store, "data/synth", sequences, corpus_meta, val_fraction=0.1, meta={"teachers": ["runs/t0"]}
    )
    train, val, meta = load_dataset(store, "data/synth")
    assert np.array_equal(train, sequences[:36].reshape(-1)) and np.array_equal(
        val, sequences[36:].reshape(-1)
    )
    assert meta["sequence_length"] == 17 and meta["teachers"] == ["runs/t0"]
    job = _job(data_rel, store_uri, batches={"kind": "mixture", "synthetic": "data/synth", "weight": 0.5})
    assert isinstance(mixture_batches(job, store, DistEnv(), np.arange(2000) % 256), MixtureBatcher)
    with pytest.raises(ConfigError, match="batches.weight"):
        mixture_batches(
            job.model_copy(update={"batches": {"kind": "mixture", "synthetic": "data/synth", "weight": 1.5}}),
            store,
            DistEnv(),
            train,
        )
    _commit_run(store, "runs/t0", 0)
    job = job.model_copy(update={"objective": {"kind": "token_kl", "teachers": ["runs/t0"]}})
    summary = run_job(job, DistEnv(), report=lambda record: None)
    assert summary["steps"] == 6 and math.isfinite(summary["val_loss"]) and store.has(job.run_rel)


def test_too_little_synthetic_data_is_an_error_not_a_hang():
    batcher = MixtureBatcher(np.arange(3000) % 256, np.zeros(10, dtype=np.int64), 17, 0.5, 16, 8, 0)
    with pytest.raises(ValueError, match="10 tokens hold no window of 17 tokens"):
        batcher.next_batch()


def test_synthetic_prefix_takes_whole_sequences_and_refuses_more_than_sampled():
    from asymptote.distill import synthetic_prefix

    tokens = np.arange(10 * 17)
    assert synthetic_prefix(tokens, 17, None) is tokens
    assert np.array_equal(synthetic_prefix(tokens, 17, 40), tokens[:34])  # 2 whole sequences of 17
    with pytest.raises(ValueError, match="exceeds the 170 synthetic training tokens"):
        synthetic_prefix(tokens, 17, 171, "data/s")
