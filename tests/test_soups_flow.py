"""The soups flow end to end on real local Ray and a real Prefect API, at a tiny scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from asymptote.checkpoint import WEIGHTS
from asymptote.config import ConfigError, ModelConfig, build
from asymptote.evaluation import mean_loss
from asymptote.flows.soups import soup_study
from asymptote.job import model_from_run
from asymptote.model import Decoder
from asymptote.reports.soups import report
from asymptote.shards import load_split
from asymptote.soups import Checkpoint, Scorer, window_losses
from asymptote.soups_config import Kitchen, MergeOptions, SoupOptions, SoupStudyConfig
from asymptote.soups_plan import probe_hparams
from asymptote.soups_worker import cook_with, segment
from asymptote.tasks.soups import sample_trials, sweep_space

TRAIN = {"batch_size": 8, "warmup_steps": 3, "eval_every": 1000, "eval_windows": 16, "lr": 3e-3}


def tiny_study(store_uri: str, **over) -> SoupStudyConfig:
    raw = {
        "name": "tiny-soups",
        "data": {"source": "builtin:python-docs", "max_train_tokens": 40_000},
        "base": {"model": {"preset": "cpu-0.1m"}, "train": TRAIN | {"max_steps": 40}},
        "sweep": {"n_models": 3, "epochs": [0.05, 0.1], "lr": [1e-3, 3e-3], "train": TRAIN},
        "soups": {"eval_windows": 24, "learned_steps": 3, "learned_batch_size": 4},
        "merges": {"scales": [1.0, 1.5]},
        "independent": {"members": 2, "train": TRAIN | {"max_steps": 25}},
        "store": {"uri": store_uri},
    }
    for key, value in over.items():
        raw[key] = raw.get(key, {}) | value if isinstance(value, dict) else value
    return build(SoupStudyConfig, raw)


@pytest.mark.slow
def test_study_sweeps_soups_merges_and_aligns(ray_local, prefect_api, store_uri, store):
    config = tiny_study(store_uri)
    res = soup_study(config)
    outcome = report(config, res, store, level=2, prefix="soups-")  # as a section of the main report
    assert outcome.markdown.startswith("## Model soups") and "soups-heldout-vs-test.png" in outcome.markdown
    assert outcome.files["soups-heldout-vs-test.png"][:4] == b"\x89PNG"
    # The report names the split and what was resampled, and says p_direction, never a bare p.
    assert "target's test split" in outcome.markdown and "test windows of one model" in outcome.markdown
    assert "p_direction=" in outcome.markdown and " p=" not in outcome.markdown
    assert len(res.finetunes) == 3 and {ft.run.summary["steps"] for ft in res.finetunes} <= {
        4,
        8,
    }  # 0.05 or 0.1 of 78 batches
    for ft in res.finetunes:  # every fine-tune starts from the base
        assert store.read_json(ft.run.rel, "config.json")["init_from"] == res.base
    names = {e.name for e in res.entries}
    assert {
        "uniform",
        "greedy",
        "learned",
        "mwa",
        "task_arithmetic",
        "ties",
        "dare",
        "slerp",
        "naive_avg",
        "aligned_avg",
        "ensemble",
    } <= names
    assert all(math.isfinite(e.heldout) and math.isfinite(e.test) for e in res.entries)

    # Every soup is a committed checkpoint that model_from_run loads; its test loss reproduces.
    greedy = next(e for e in res.entries if e.name == "greedy")
    meta = store.manifest(greedy.rel).meta
    assert meta["ingredients"] == [ft.run.rel for ft in res.finetunes] and sum(
        meta["weights"].values()
    ) == pytest.approx(1)
    model = model_from_run(store, greedy.rel)
    # Figures are on the real test split, and the result says so.
    assert res.split == "test" and res.ood_split is None  # base trained on the target: no OOD side
    test = load_split(store, res.data.rel, "test")
    assert mean_loss(model, test, model.cfg.block_size) == pytest.approx(greedy.test, rel=1e-5)
    assert np.mean(greedy.test_windows) == pytest.approx(greedy.test, rel=1e-9)

    singles = [e for e in res.entries if e.kind == "ingredient"]
    assert greedy.heldout <= min(e.heldout for e in singles)  # greedy never accepts a worse soup
    losses = res.test_loss()
    assert losses["best_single"] == min(singles, key=lambda e: e.heldout).test
    assert losses["aligned_avg"] < losses["naive_avg"]  # alignment helps independently trained members
    # `asymptote store ls` lists each committed model by what it is
    kinds = {e.kind: store.manifest(e.rel).kind for e in res.entries if e.kind in ("soup", "merge")}
    assert kinds == {"soup": "soup", "merge": "merge"}


@pytest.mark.slow
def test_tune_engine_and_given_checkpoints_reuse_the_same_runs(ray_local, prefect_api, store_uri, store):
    light = {
        "independent": {"members": 0},
        "merges": {"methods": ["ties"], "scales": [1.0]},
        "soups": {"methods": ["uniform", "greedy"]},
        "base": {"train": TRAIN | {"max_steps": 20}},
    }
    first = soup_study(tiny_study(store_uri, sweep={"engine": "tune", "n_models": 2}, **light))
    runs = [ft.run.rel for ft in first.finetunes]
    assert len(runs) == 2 and all(store.has(r) for r in runs)
    walls = [store.read_json(r, "summary.json")["wall_s"] for r in runs]

    # The same sweep through the other engine asks for the same content-addressed runs: nothing trains.
    again = soup_study(tiny_study(store_uri, sweep={"engine": "tasks", "n_models": 2}, **light))
    assert [ft.run.rel for ft in again.finetunes] == runs
    assert [store.read_json(r, "summary.json")["wall_s"] for r in runs] == walls

    # A soup over checkpoints already in the store (no sweep): the same soups as the study made.
    given = soup_study(tiny_study(store_uri, ingredients=runs, **(light | {"base": {"run": first.base}})))
    assert given.finetunes == [] and given.base == first.base

    def by_name(r):
        return {e.name: e.test for e in r.entries}

    assert by_name(given) == by_name(first) and set(by_name(given)) == set(runs) | {
        "uniform",
        "greedy",
        "ties",
    }


def test_bad_configs_name_the_field_and_the_fix(store_uri):
    with pytest.raises(ConfigError, match="set base.run"):
        tiny_study(store_uri, ingredients=["runs/abc"])
    with pytest.raises(ConfigError, match="sweep.lr"):
        tiny_study(store_uri, sweep={"lr": [3e-3, 1e-3]})
    with pytest.raises(ConfigError, match="independent.members"):
        tiny_study(store_uri, independent={"members": 1})
    with pytest.raises(ConfigError, match="soups.methods.*allowed: uniform, greedy, learned, mwa"):
        tiny_study(store_uri, soups={"methods": ["median"]})
    assert np.isfinite(tiny_study(store_uri).sweep.lr[0])


def test_sweep_draws_are_seeded_and_inside_the_search_space(store_uri):
    sweep = tiny_study(
        store_uri, sweep={"n_models": 6, "lr": [1e-4, 1e-2], "weight_decay": [0.05, 0.05]}
    ).sweep
    space = sweep_space(sweep, sweep.lr, sweep.lengths(None))
    draws = sample_trials(space, sweep.n_models, sweep.seed)
    assert draws == sample_trials(space, sweep.n_models, sweep.seed)  # same seed, same runs
    assert draws != sample_trials(space, sweep.n_models, sweep.seed + 1)
    assert len(draws) == 6 and len({d["seed"] for d in draws}) == 6
    assert all(
        1e-4 <= d["lr"] <= 1e-2 and d["weight_decay"] == 0.05 and d["epochs"] in (0.05, 0.1) for d in draws
    )


def test_sweep_lengths_follow_the_base_schedule(store_uri):
    sweep = tiny_study(store_uri, sweep={"steps_fraction": [0.1, 0.25]}).sweep
    assert sweep.lengths(400) == ("max_steps", [40, 100])
    assert tiny_study(store_uri).sweep.lengths(400) == ("epochs", [0.05, 0.1])
    with pytest.raises(ConfigError, match="n_models must be >= 2"):
        tiny_study(store_uri, sweep={"n_models": 1, "basin": {"rungs": 2}})


def test_probe_pairs_descend_from_the_base_peak(store_uri):
    sweep = tiny_study(store_uri, sweep={"basin": {"rungs": 3}, "weight_decay": [0.01, 0.04]}).sweep
    first, third = probe_hparams(sweep, 1e-2, None, 0), probe_hparams(sweep, 1e-2, None, 2)
    assert [h["lr"] for h in first] == [1e-2, 1e-2] and [h["lr"] for h in third] == pytest.approx(
        [2.5e-3] * 2
    )
    assert [h["seed"] for h in first] == [h["seed"] for h in third] and first[0]["seed"] != first[1]["seed"]
    assert all(h["epochs"] == 0.1 and h["weight_decay"] == pytest.approx(0.02) for h in first + third)


# ----------------------------------------------------------------------------- no choice reads test

TINY = ModelConfig(n_layer=2, n_head=2, d_model=16, d_ff=24, block_size=16)


class Adversarial(Scorer):
    """Test and OOD losses that rank every model in the reverse order of its held-out loss: any choice
    made on them instead of held-out would come out different."""

    def test_windows(self, model):
        return -window_losses(model, self.heldout, self.block) + 10.0

    def ood_windows(self, model):
        return -window_losses(model, self.heldout, self.block) + 20.0


class Blind(Scorer):
    def test_windows(self, model):
        raise AssertionError("the basin probe read the test split")

    ood_windows = test_windows


def _kitchen_in(store, tmp_path) -> Kitchen:
    """A base and four noisy fine-tunes of it committed as runs, with distinct held-out losses."""
    torch.manual_seed(0)
    base = Decoder(TINY).state_dict()
    rels = []
    for i, noise in enumerate([0.0, 0.02, 0.05, 0.05, 0.1]):
        rel = "runs/base" if i == 0 else f"runs/ft{i}"
        state = {k: v + noise * torch.randn_like(v) for k, v in base.items()}
        with store.writer(rel, kind="run", meta={"model": TINY.model_dump()}) as d:
            save_file({k: v.contiguous() for k, v in state.items()}, str(d / WEIGHTS))
        rels.append(rel)
    soups = SoupOptions(learned_steps=3, learned_batch_size=4, bootstrap=200, curve_points=5)
    merges = MergeOptions(scales=[0.5, 1.0, 2.0])
    with store.writer("data/bytes", kind="data", meta={"tokenizer": "byte", "vocab_size": 256}) as d:
        (d / "meta.json").write_text("{}")  # what a soup records of its data: only the tokenizer is read here
    return Kitchen(ingredients=rels[1:], base=rels[0], data="data/bytes", soups=soups, merges=merges)


def test_no_choice_reads_the_test_split(store, tmp_path):
    kitchen = _kitchen_in(store, tmp_path)
    rng = np.random.default_rng(0)
    held, test, ood = (rng.integers(0, 256, n).astype(np.uint8) for n in (900, 900, 500))
    model = Decoder(TINY).eval()
    honest = cook_with(store, kitchen, Scorer(held, test, 16, 24, ood=ood), model, "soups/honest")
    rigged = cook_with(store, kitchen, Adversarial(held, test, 16, 24, ood=ood), model, "soups/rigged")

    assert [e.name for e in honest.entries] == [e.name for e in rigged.entries]
    for h, r in zip(honest.entries, rigged.entries, strict=True):
        # Everything chosen (greedy's order and picks, learned and MWA weights, merge scales) and every
        # held-out loss is the same; only the reported test figures moved.
        assert (h.heldout, h.weights, h.info) == (r.heldout, r.weights, r.info), h.name
        assert h.test != r.test and h.ood_test != r.ood_test, h.name
        if h.rel and h.kind != "ingredient":
            a, b = (
                Checkpoint.from_folder(store.localize(h.rel)),
                Checkpoint.from_folder(store.localize(r.rel)),
            )
            assert all(torch.equal(a.load()[k], b.load()[k]) for k in a.keys()), h.name
    for cooking in (honest, rigged):  # gains are over the best ingredient by held-out, whatever test says
        best = min((e for e in cooking.entries if e.kind == "ingredient"), key=lambda e: e.heldout)
        for e in cooking.entries:
            if e.kind in ("soup", "merge"):
                assert e.gain["estimate"] == pytest.approx(best.test - e.test, abs=1e-9), e.name
    greedy = next(e for e in honest.entries if e.name == "greedy")
    assert greedy.gain is not None and 0.5 <= greedy.gain["p_direction"] <= 1 and greedy.ood_gain is not None
    assert "p" not in greedy.gain and greedy.gain["ci"][0] <= greedy.gain["estimate"] <= greedy.gain["ci"][1]
    for h, r in zip(honest.segments, rigged.segments, strict=True):
        assert [p["heldout"] for p in h.points] == [p["heldout"] for p in r.points] and h.check == r.check

    # The basin probe never even calls the test or OOD scorers.
    ends = [Checkpoint.from_folder(store.localize(r), name=r) for r in kitchen.ingredients[:2]]
    probe = segment(Blind(held, test, 16, 24, ood=ood), model, ends[0], ends[1], 5, "probe", full=False)
    assert len(probe.points) == 5 and set(probe.points[0]) == {"alpha", "heldout"}
