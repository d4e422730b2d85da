"""The distillation study's choices and figures: students never see the test split, the synthetic amount
and mixing weight reach the training job, the student search certifies, test losses and their bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asymptote.checkpoint import WEIGHTS, load_weights, save_weights
from asymptote.config import ConfigError, DataConfig, ModelConfig, build
from asymptote.data import steps_for
from asymptote.dist import DistEnv
from asymptote.distill_config import (
    DistillConfig,
    DistillResult,
    StudentGrid,
    StudentPoint,
    StudentStart,
    Teachers,
)
from asymptote.distill_plan import member_jobs, single_descent, student_job, student_train
from asymptote.distill_search import StudentDescent, nearest, retention, student_start
from asymptote.ensemble import Ensemble, window_losses
from asymptote.evaluation import evaluate_split
from asymptote.job import build_trainer, run_job
from asymptote.model import Decoder
from asymptote.refs import DataRef
from asymptote.reports.distill import _gain_line
from asymptote.shards import load_dataset, load_meta, load_split, prepare_dataset
from asymptote.synthetic import save_synthetic

TINY = {"n_layer": 1, "n_head": 2, "d_model": 16, "d_ff": 32, "block_size": 16}
TEMPLATE = {
    "batch_size": 4,
    "warmup_steps": 2,
    "eval_windows": 8,
    "log_every": 1000,
    "checkpoint_every": 1000,
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _text(seed: int, n: int) -> str:
    words = ["the", "king", "sword", "love", "night", "speak", "fair", "good", "lord", "my", "thou", "art"]
    rng = np.random.default_rng(seed)
    out = " ".join(words[i] for i in rng.integers(0, len(words), n // 4))
    return (out * 2)[:n]


def _commit_run(store, rel: str, seed: int) -> Decoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(**TINY)
    model = Decoder(cfg)
    with store.writer(rel, kind="run", meta={"model": cfg.model_dump()}) as folder:
        save_weights(model, folder / WEIGHTS)
    return model.eval()


def _config(source: str, store_uri: str, **student) -> DistillConfig:
    return build(
        DistillConfig,
        {
            "model": TINY,
            "data": {"source": source},
            "budget": 3_000,
            "train": TEMPLATE,
            "student": {"grid": {"epochs": [1, 2], "weight_decay": [0.1, 0.4]}} | student,
            "store": {"uri": store_uri},
        },
    )


def _ref(store, rel: str) -> DataRef:
    return DataRef(rel=rel, uri=store.uri(rel), n_train=0, n_val=0, source_sha256="")


def _synthetic(store, data_rel: str, n_seq: int) -> DataRef:
    sequences = np.random.default_rng(3).integers(0, 256, (n_seq, 17)).astype(np.uint8)
    save_synthetic(store, "data/synth", sequences, store.manifest(data_rel).meta)
    return _ref(store, "data/synth")


@pytest.fixture
def two_corpora(tmp_path, store):
    """Two corpora equal in their training and validation text, different in their test text."""
    text = _text(0, 40_000)
    keep = int(len(text) * 0.97)  # the test split is the last 5%: only its tail differs
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    paths[0].write_text(text)
    paths[1].write_text(text[:keep] + _text(1, len(text) - keep).upper())
    rels = [prepare_dataset(DataConfig(source=str(p)), store) for p in paths]
    return [str(p) for p in paths], rels


def test_students_never_read_the_test_split_in_training_or_selection(store, store_uri, two_corpora):
    paths, rels = two_corpora
    a, b = (load_dataset(store, r) for r in rels)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # same train and validation
    assert not np.array_equal(load_split(store, rels[0], "test"), load_split(store, rels[1], "test"))
    teachers = Teachers(single="runs/t0", members=["runs/t0", "runs/t1"], trained_here=False)
    for i in range(2):
        _commit_run(store, f"runs/t{i}", i)
    synthetic = _synthetic(store, rels[0], 400)
    chosen = []
    for path, rel in zip(paths, rels, strict=True):
        config = _config(path, store_uri)
        grid = config.student.grid
        cd = StudentDescent(
            grid, config.student.axes("combined"), student_start(grid, StudentStart(), 2, 0.1)
        )
        runs = {}
        while cd.pending():  # the flow's selection: train each pending point, judge it by validation loss
            for p in cd.pending():
                job = student_job(
                    config, store, _ref(store, rel), "combined", p, 3e-3, teachers, synthetic, None
                )
                cd.record(p, run_job(job, DistEnv(), report=lambda r: None)["val_loss"])
                runs[p] = job.run_rel
        assert cd.certified
        best = cd.best()
        chosen.append((best, cd.results, load_weights(store.localize(runs[best]) / WEIGHTS, "cpu")))
    (best_a, results_a, weights_a), (best_b, results_b, weights_b) = chosen
    assert best_a == best_b and results_a == results_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # ...while the test split, read only by the figures, does tell the corpora apart.
    model = Decoder(ModelConfig(**TINY))
    model.load_state_dict(weights_a)
    losses = [window_losses(lambda i: model, 1, load_split(store, r, "test"), 16).mean() for r in rels]
    assert losses[0] != pytest.approx(losses[1])


def test_synthetic_amount_and_mixing_weight_reach_the_train_job(store, store_uri, two_corpora):
    paths, rels = two_corpora
    config = _config(paths[0], store_uri, grid={"synthetic": [0.5, 2.0], "mix": [0.25, 0.75]})
    needed = config.sequences_needed()
    synthetic = _synthetic(store, rels[0], needed)
    teachers = Teachers(single="runs/t0", members=["runs/t0"], trained_here=False)
    point = StudentPoint(epochs=1, weight_decay=0.1, synthetic=2.0, mix=0.75, alpha=1.0)

    def job_at(p: StudentPoint, method: str = "sequence"):
        return student_job(config, store, _ref(store, rels[0]), method, p, 3e-3, teachers, synthetic, None)

    job = job_at(point)
    tokens = config.synthetic_tokens(2.0)
    assert tokens == (2 * 3_000 // 17) * 17
    assert job.batches == {
        "kind": "mixture",
        "synthetic": "data/synth",
        "weight": 0.75,
        "synthetic_tokens": tokens,
    }
    assert job.objective == {"kind": "ce"} and job.train.weight_decay == 0.1 and job.train.epochs == 1
    trainer, _, _ = build_trainer(job, store, DistEnv())
    assert len(trainer.batches.synthetic) == tokens and trainer.batches.weight == 0.75
    assert len(load_dataset(store, "data/synth")[0]) >= tokens  # the sampled amount covers the largest point
    small = job_at(point._replace(synthetic=0.5))
    assert small.batches["synthetic_tokens"] == config.synthetic_tokens(0.5) < tokens and small.key != job.key
    kl = job_at(point, "token_kl")
    assert kl.batches == {"kind": "epochs"} and kl.objective["teachers"] == ["runs/t0"]
    assert job.train.lr == 3e-3, "scale 1: the single model's learning rate, the same run as before the axis"
    faster = job_at(point._replace(lr_scale=3.0))
    assert faster.train.lr == pytest.approx(9e-3) and faster.key != job.key


def test_test_losses_per_window_average_to_evaluate_split(store, two_corpora):
    _, rels = two_corpora
    members = [_commit_run(store, f"runs/m{i}", i) for i in range(3)]
    tokens, meta = load_split(store, rels[0], "test"), load_meta(store, rels[0])
    for how in ("logits", "probs"):
        windows = window_losses(lambda i: members[i], 3, tokens, 16, how, batch_size=5)
        expected = evaluate_split(Ensemble(members, how), tokens, meta, "test", 16)["test_loss"]
        assert len(windows) == (len(tokens) - 1) // 16 and windows.mean() == pytest.approx(expected, rel=1e-5)
    one = window_losses(lambda i: members[0], 1, tokens, 16)
    assert one.mean() == pytest.approx(
        evaluate_split(members[0], tokens, meta, "test", 16)["test_loss"], rel=1e-5
    )


def test_retained_fraction_and_its_interval():
    rng = np.random.default_rng(0)
    single = 2.0 + 0.1 * rng.standard_normal(500)
    ensemble = single - 0.2 + 0.01 * rng.standard_normal(500)
    half = single - 0.1
    kept = retention(single, ensemble, {"half": half, "none": single.copy()}, n_boot=300)
    assert kept.resolved and kept.gain_ci[0] > 0
    assert kept.retained["half"] == pytest.approx(0.1 / (single.mean() - ensemble.mean()))
    lo, hi = kept.retained_ci["half"]
    assert lo <= kept.retained["half"] <= hi and hi - lo < 0.1
    assert kept.retained["none"] == pytest.approx(0.0)
    # A gain within its own noise: no fraction, rather than a division by noise.
    noisy = single + 0.3 * rng.standard_normal(500)
    unresolved = retention(single, noisy, {"half": half}, n_boot=300)
    assert not unresolved.resolved and unresolved.gain_ci[0] <= 0 <= unresolved.gain_ci[1]
    assert unresolved.retained == {"half": None} and unresolved.retained_ci == {"half": None}


def test_student_descent_certifies_the_best_point_of_its_axes():
    grid = StudentGrid(epochs=[1, 2, 4, 8], weight_decay=[0.1, 0.4], synthetic=[1, 2, 4], mix=[0.5, 0.75])
    start = student_start(grid, StudentStart(), member_epochs=3, single_weight_decay=0.3)
    assert start == StudentPoint(epochs=4, weight_decay=0.4, synthetic=2, mix=0.5, alpha=1.0)
    cd = StudentDescent(grid, ("epochs", "weight_decay", "synthetic", "mix"), start)

    def loss(p: StudentPoint) -> float:
        return (math.log2(p.epochs) - 3) ** 2 + abs(p.weight_decay - 0.1) + (p.synthetic - 4) ** 2 - p.mix

    while cd.pending():
        for p in cd.pending():
            cd.record(p, loss(p))
    assert cd.certified and cd.best() == StudentPoint(8, 0.1, 4, 0.75, 1.0)
    assert len(cd.results) < 4 * 2 * 3 * 2  # a descent, not the whole grid
    axes = ("epochs", "weight_decay", "synthetic", "mix")
    lines = StudentDescent(
        grid, axes, start, walk=build(DistillConfig, {"student": {"walk": "lines"}}).student.walk
    )
    while lines.pending():
        for p in lines.pending():
            lines.record(p, loss(p))
    assert lines.certified and lines.best() == cd.best() and len(lines.results) <= len(cd.results)
    with pytest.raises(ValueError, match="unknown"):
        StudentDescent(grid, ("lr",), start)
    assert nearest([0.1, 0.4, 1.6], 0.8) == 0.4 and nearest([0.0, 0.1], 0.04) == 0.0


def test_bad_student_config_is_named():
    with pytest.raises(ConfigError, match="student.methods"):
        build(DistillConfig, {"student": {"methods": ["sequence", "telepathy"]}})
    with pytest.raises(ConfigError, match="student.walk"):
        build(DistillConfig, {"student": {"walk": "random"}})
    with pytest.raises(ConfigError, match="student.start.mix"):
        build(DistillConfig, {"student": {"start": {"mix": 0.3}}})
    with pytest.raises(ConfigError, match="synthetic"):
        build(DistillConfig, {"student": {"grid": {"synthetic": [0, 1]}}})
    with pytest.raises(ConfigError, match="disagree"):
        build(DistillConfig, {"budget": 100, "data": {"max_train_tokens": 200}})


def test_teachers_are_the_scaling_studys_runs(store, store_uri):
    """The same template, grid and member recipe give the scaling study's job keys: its runs are reused."""
    from asymptote.scaling_config import ScalingStudyConfig
    from asymptote.scaling_plan import Study
    from asymptote.search_space import Point

    shared = {
        "budget": 3_000,
        "train": TEMPLATE,
        "search": {"grid": {"lr": [3e-3, 1e-2], "weight_decay": [0.1, 0.8], "epochs": [1, 2]}},
        "ensemble": {"members": 3},
        "store": {"uri": store_uri},
    }
    distill = build(DistillConfig, {"model": TINY} | shared)
    scaling = build(ScalingStudyConfig, {"sizes": [TINY], "efficiency": {"budgets": [1000, 2000]}} | shared)
    data = _ref(store, "data/x")
    study = Study(scaling, store, data, None)
    best = Point(1e-2, 0.8, 2)
    model = scaling.sizes[0]
    ours = single_descent(distill, store, data, None)
    theirs = study.descent(model, "regularized", scaling.tokens, best)
    assert ours.job(best).key == theirs.job(best).key == study.point_job(model, scaling.tokens, best).key
    assert ours.cd.axes == theirs.cd.axes
    members = member_jobs(distill, store, data, best, None)
    assert [j.key for j in members] == [study.member_job(model, best, k).key for k in (1, 2, 3)]
    assert [
        (j.train.epochs, j.train.weight_decay, j.train.train_seed, j.train.data_seed) for j in members
    ] == [(4, 0.4, k, k) for k in (1, 2, 3)]


def test_report_says_so_when_the_ensembles_gain_is_noise():
    noise = DistillResult.model_construct(
        gain=0.001, gain_ci=[-0.002, 0.004], gain_resolved=False, test_windows=50
    )
    assert "within its own noise" in _gain_line(noise) and "no retained fraction" in _gain_line(noise)
    clear = DistillResult.model_construct(gain=0.2, gain_ci=[0.18, 0.22], gain_resolved=True, test_windows=50)
    assert "noise" not in _gain_line(clear) and "[0.1800, 0.2200]" in _gain_line(clear)


def test_student_runs_evaluate_curve_points_times_as_the_trainer_counts_steps():
    """The plan counts a student's steps without importing torch: it must agree with the trainer's count."""
    for budget, batch, epochs in [(3_000, 4, 1), (20_000, 16, 2.5), (6_000, 8, 4)]:
        config = build(
            DistillConfig, {"model": TINY, "budget": budget, "train": TEMPLATE | {"batch_size": batch}}
        )
        point = StudentPoint(epochs=epochs, weight_decay=0.1, synthetic=1.0, mix=0.5, alpha=1.0)
        total = steps_for(config.tokens, TINY["block_size"], batch, epochs, None)
        assert student_train(config, point, 1e-3).eval_every == max(1, total // config.student.curve_points)
