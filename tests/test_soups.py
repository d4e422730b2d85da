"""Soups as pure functions over checkpoints: exactness, greedy's rule, learned gradients, memory, splits."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch.func import functional_call

from asymptote.config import ModelConfig
from asymptote.data import eval_windows, windows_to_batch
from asymptote.evaluation import mean_loss
from asymptote.model import Decoder, lm_loss
from asymptote.soups import (
    SOUPS,
    Checkpoint,
    along_segment,
    basin_check,
    greedy_soup,
    learned_soup,
    mixing_grad,
    mwa_soup,
    mwa_weights,
    uniform_soup,
    weighted_average,
    window_losses,
)
from asymptote.soups_config import MERGE_METHODS, SOUP_METHODS, SoupOptions, heldout_test_split
from asymptote.soups_gains import gain_over, verdict
from asymptote.soups_plan import choose_rung

TINY = ModelConfig(n_layer=2, n_head=2, d_model=16, d_ff=24, block_size=16)


def save(tmp_path, name: str, tensors: dict[str, torch.Tensor]) -> Checkpoint:
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return Checkpoint(name, path)


def decoder_state(seed: int, cfg: ModelConfig = TINY) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return Decoder(cfg).state_dict()


def test_uniform_soup_of_identical_models_is_the_model(tmp_path):
    state = decoder_state(0)
    with torch.no_grad():  # gains away from 1 so every tensor carries information
        state["norm.weight"].uniform_(0.3, 3.0)
    ings = [save(tmp_path, f"m{i}", state) for i in range(5)]
    soup = uniform_soup(ings)
    assert soup.keys() == state.keys()
    for name in state:
        assert torch.equal(soup[name], state[name]), name


def test_uniform_soup_is_the_mean(tmp_path):
    states = [decoder_state(s) for s in range(3)]
    soup = uniform_soup([save(tmp_path, f"m{i}", s) for i, s in enumerate(states)])
    for name in states[0]:
        torch.testing.assert_close(soup[name], sum(s[name] for s in states) / 3)


def test_weighted_average_rejects_negative_weights_and_empty_lists(tmp_path):
    ing = save(tmp_path, "a", {"w": torch.ones(3)})
    with pytest.raises(ValueError, match="weights must be >= 0"):
        weighted_average([ing], lambda k, n: -1.0)
    with pytest.raises(ValueError, match="at least one ingredient"):
        uniform_soup([])


def test_mwa_weights_follow_the_documented_formula():
    losses = [2.0, 2.2, 3.0]
    assert mwa_weights(losses, 0.0) == pytest.approx([1 / 3] * 3)
    w = mwa_weights(losses, 4.0)
    raw = np.array([1.0, 1.1**-4, 1.5**-4])
    assert w == pytest.approx((raw / raw.sum()).tolist())
    assert mwa_weights(losses, 200.0)[0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="penalty"):
        mwa_weights(losses, -1.0)


def test_mwa_soup_weights_the_checkpoints(tmp_path):
    ings = [save(tmp_path, "a", {"w": torch.zeros(4)}), save(tmp_path, "b", {"w": torch.ones(4)})]
    soup, weights = mwa_soup(ings, [1.0, 2.0], penalty=1.0)
    assert weights == pytest.approx([2 / 3, 1 / 3])
    torch.testing.assert_close(soup["w"], torch.full((4,), 1 / 3))


# ----------------------------------------------------------------------------- greedy


def test_greedy_tries_best_first_and_keeps_only_strict_improvements(tmp_path):
    # A 4-parameter "model" whose held-out loss is the squared distance to a target.
    target = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    e1, e2 = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 1.0, 0, 0]])
    members = {
        "far": target + 3 * e2,
        "a": target + e1,
        "b": target - e1,
        "c": target + 2 * e1,
        "d": target - e1,
    }
    ings = [save(tmp_path, n, {"weight": w}) for n, w in members.items()]

    def evaluate(m):
        return float(((m.weight - target) ** 2).sum())

    scores = [float(((w - target) ** 2).sum()) for w in members.values()]  # 9, 1, 1, 4, 1
    model = nn.Linear(4, 1, bias=False)
    res = greedy_soup(model, ings, scores, evaluate)
    assert res.order == [1, 2, 4, 3, 0]  # held-out loss ascending, ties by index
    # a -> +b (mean = target: kept) -> +d (worse: dropped) -> +c (worse) -> +far (worse)
    assert res.chosen == [1, 2]
    assert [h["kept"] for h in res.history] == [True, True, False, False, False]
    assert res.loss == pytest.approx(0.0, abs=1e-10)
    assert torch.equal(model.weight.data, (members["a"] + members["b"]) / 2)  # exactly the chosen mean
    best = res.history[0]["loss"]
    for h in res.history[1:]:  # never adds an ingredient that does not strictly improve
        assert h["kept"] == (h["loss"] < best)
        best = min(best, h["loss"]) if h["kept"] else best


def test_greedy_on_decoders_is_never_worse_than_its_first_ingredient(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 256, 600).astype(np.uint8)
    base = decoder_state(0)
    states = [{k: v + 0.02 * torch.randn_like(v) for k, v in base.items()} for _ in range(3)] + [
        decoder_state(9)
    ]
    ings = [save(tmp_path, f"m{i}", s) for i, s in enumerate(states)]
    model = Decoder(TINY)

    def evaluate(m):
        return mean_loss(m, tokens, TINY.block_size)

    scores = []
    for ing in ings:
        model.load_state_dict(ing.load())
        scores.append(evaluate(model))
    res = greedy_soup(model, ings, scores, evaluate)
    assert res.order == sorted(range(4), key=lambda k: scores[k])
    assert res.loss <= min(scores) + 1e-6
    assert evaluate(model) == res.loss
    expected = uniform_soup([ings[k] for k in res.chosen])
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


# ----------------------------------------------------------------------------- learned


def test_streamed_mixing_gradient_matches_autograd(tmp_path):
    states = [decoder_state(s) for s in range(3)]
    ings = [save(tmp_path, f"m{i}", s) for i, s in enumerate(states)]
    model = Decoder(TINY).eval()
    names = list(states[0])
    alpha = torch.randn(3, len(names), generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, 1)
    w = alpha.softmax(0).requires_grad_(True)
    mixed = {n: sum(w[k, t] * states[k][n] for k in range(3)) for t, n in enumerate(names)}
    expected_loss = lm_loss(functional_call(model, mixed, (x,)), y)
    expected_loss.backward()
    loss, grads = mixing_grad(model, ings, alpha.softmax(0), names, (x, y))
    assert loss == pytest.approx(float(expected_loss.detach()), rel=1e-5)
    torch.testing.assert_close(grads, w.grad, rtol=1e-4, atol=1e-6)


def test_learned_soup_lowers_its_training_loss_and_mixes_per_tensor(tmp_path):
    tokens = np.tile(np.arange(40, dtype=np.uint8), 30)  # a learnable pattern
    base = decoder_state(0)
    states = [{k: v + 0.05 * torch.randn_like(v) for k, v in base.items()} for _ in range(3)]
    ings = [save(tmp_path, f"m{i}", s) for i, s in enumerate(states)]
    x = torch.from_numpy(np.stack([tokens[i : i + 16] for i in range(0, 320, 20)]).astype(np.int64))
    y = torch.from_numpy(np.stack([tokens[i + 1 : i + 17] for i in range(0, 320, 20)]).astype(np.int64))

    def batches():
        while True:
            yield x, y

    model = Decoder(TINY)
    res = learned_soup(model, ings, batches(), steps=15, lr=0.2)
    assert res.weights.shape == (3, len(res.names))
    torch.testing.assert_close(res.weights.sum(0), torch.ones(len(res.names)))
    assert res.losses[-1] < res.losses[0]
    assert float(lm_loss(model(x), y).detach()) < res.losses[0]  # the model ends as the learned soup


def test_heldout_and_test_interleave_in_chunks():
    val = np.arange(100)
    held, test = heldout_test_split(val, 0.5, chunk=10)
    assert test.tolist() == [v for c in (0, 2, 4, 6, 8) for v in range(10 * c, 10 * c + 10)]
    assert held.tolist() == [v for c in (1, 3, 5, 7, 9) for v in range(10 * c, 10 * c + 10)]
    held, test = heldout_test_split(val, 0.3, chunk=10)
    assert len(held) == 30 and len(test) == 70 and sorted(held.tolist() + test.tolist()) == list(range(100))
    with pytest.raises(ValueError, match="heldout_fraction"):
        heldout_test_split(val, 1.0)
    with pytest.raises(ValueError, match="split_chunk_windows"):
        heldout_test_split(val, 0.5, chunk=100)


# ----------------------------------------------------------------------------- memory


TENSOR_TYPES = {torch.Tensor, nn.Parameter}


def live_tensor_bytes(collect: bool = False) -> int:
    """Bytes of every distinct tensor storage held by a Python object right now.

    Tensors are freed by reference counting as soon as the code drops them, so probes skip the
    (slow) cycle collection; the baseline runs it once so no earlier garbage inflates the budget.
    """
    if collect:
        gc.collect()
    tensors = [o for o in gc.get_objects() if type(o) in TENSOR_TYPES]
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in tensors
        if t.device.type == "cpu"
    }
    return sum(storages.values())


class Probe(Checkpoint):
    """A checkpoint that records the bytes of live tensors right after each load."""

    peaks: list[int] = []

    def load(self):
        state = super().load()
        Probe.peaks.append(live_tensor_bytes())
        return state


MEM_CFG = ModelConfig(n_layer=2, n_head=4, d_model=96, d_ff=256, block_size=16)  # ~0.3M params, 1.2 MB


def test_streaming_soups_hold_at_most_two_models(tmp_path):
    states = [decoder_state(s, MEM_CFG) for s in range(5)]
    model_bytes = sum(t.nbytes for t in states[0].values())
    ings = [Probe(f"m{i}", save(tmp_path, f"m{i}", s).path) for i, s in enumerate(states)]
    del states
    baseline = live_tensor_bytes(collect=True)

    def budget(models):
        return baseline + models * model_bytes + model_bytes // 10

    Probe.peaks = []
    soup = uniform_soup(ings)
    assert len(Probe.peaks) == 5 and max(Probe.peaks) <= budget(2)

    Probe.peaks = []
    mwa_soup(ings, [1.0 + i / 10 for i in range(5)], penalty=2.0)
    assert max(Probe.peaks) <= budget(3)  # the uniform soup above is still alive: 1 + 2
    del soup

    model = Decoder(MEM_CFG)
    Probe.peaks = []
    res = greedy_soup(model, ings, [float(i) for i in range(5)], lambda m: -float(m.norm.weight.sum()))
    assert len(Probe.peaks) == 5 + len(res.chosen) and max(Probe.peaks) <= budget(2)

    Probe.peaks = []
    x = torch.randint(0, 256, (2, 16))
    learned_soup(model, ings, iter([(x, x)]), steps=1, lr=0.1)
    assert max(Probe.peaks) <= budget(2)

    # The probe does see models held together: loading every ingredient at once counts five.
    Probe.peaks = []
    everything = [ing.load() for ing in ings]
    assert max(Probe.peaks) >= budget(5) - model_bytes // 5
    del everything


def test_diverged_ingredients_get_no_weight_and_go_last(tmp_path):
    assert mwa_weights([2.0, float("nan"), 2.0], 3.0) == pytest.approx([0.5, 0.0, 0.5])
    ings = [
        save(tmp_path, n, {"weight": torch.full((1, 2), v)})
        for n, v in (("ok", 1.0), ("nan", 0.0), ("far", 5.0))
    ]
    res = greedy_soup(
        nn.Linear(2, 1, bias=False),
        ings,
        [1.0, float("nan"), 3.0],
        lambda m: float(((m.weight - 1.0) ** 2).sum()),
    )
    assert res.order == [0, 2, 1] and res.chosen == [0]


# ----------------------------------------------------------------------------- splits, gains, segments


def test_heldout_test_and_ood_windows_never_overlap():
    # Token values are their positions in the validation split, so every window's tokens (inputs and
    # targets) name the text they come from.
    block, chunk_windows = 16, 4
    val = np.arange(2000)
    held, test = SoupOptions(split_chunk_windows=chunk_windows).split(val, block)

    def positions(tokens):
        x, y = windows_to_batch(tokens, eval_windows(len(tokens), block), block)
        return set(x.flatten().tolist()) | set(y.flatten().tolist())

    seen_held, seen_test = positions(held), positions(test)
    assert seen_held and seen_test and not seen_held & seen_test
    assert len(seen_held) + len(seen_test) > 0.9 * len(val)  # the split wastes little of the text
    # The held-out cap picks among held-out windows only.
    x, y = windows_to_batch(held, eval_windows(len(held), block, max_windows=7), block)
    assert set(x.flatten().tolist()) <= seen_held


def test_window_losses_average_to_mean_loss():
    tokens = np.random.default_rng(0).integers(0, 256, 700).astype(np.uint8)
    model = Decoder(TINY).eval()
    per_window = window_losses(model, tokens, TINY.block_size, batch_size=5)
    assert len(per_window) == (len(tokens) - 1) // TINY.block_size
    assert per_window.mean() == pytest.approx(mean_loss(model, tokens, TINY.block_size), rel=1e-6)


def test_gain_interval_p_direction_and_verdict():
    rng = np.random.default_rng(0)
    ref = rng.normal(2.0, 0.3, 400)
    better = gain_over([ref], [ref - 0.05 + rng.normal(0, 0.01, 400)])
    assert better["estimate"] == pytest.approx(0.05, abs=0.003)
    assert better["ci"][0] < better["estimate"] < better["ci"][1] and better["ci"][0] > 0
    assert better["p_direction"] == 1.0 and better["verdict"] == "better" and "p" not in better
    assert "no seed noise" in better["resampled"]
    worse = gain_over([ref], [ref + 0.05])
    assert worse["estimate"] < 0 and worse["p_direction"] == 1.0 and worse["verdict"] == "worse"
    noise = gain_over([ref], [ref + rng.normal(0, 0.3, 400)])
    assert noise["ci"][0] < 0 < noise["ci"][1] and noise["verdict"] == "no verdict"
    # The same windows in both models: a constant offset is certain whatever the windows' spread.
    assert gain_over([ref], [ref - 1e-3])["p_direction"] == 1.0


def test_verdict_never_disagrees_with_its_interval():
    assert verdict({"ci": [0.001, 0.02]}) == "better"
    assert verdict({"ci": [-0.02, -0.001]}) == "worse"
    assert verdict({"ci": [-0.001, 0.02]}) == "no verdict"


def test_gain_pooled_over_bases_carries_the_spread_between_bases():
    """Three bases whose gains differ: the pooled interval is wider than any one base's window interval."""
    rng = np.random.default_rng(1)
    windows = rng.normal(2.0, 0.3, 300)
    refs = [windows + offset for offset in (0.0, 0.1, -0.1)]  # bases differ a lot; pairing cancels it
    cands = [r - g + rng.normal(0, 0.005, 300) for r, g in zip(refs, (0.01, 0.03, 0.02), strict=True)]
    pooled = gain_over(refs, cands)
    one = gain_over(refs[:1], cands[:1])
    assert pooled["estimate"] == pytest.approx(0.02, abs=0.002)
    assert pooled["ci"][1] - pooled["ci"][0] > 3 * (one["ci"][1] - one["ci"][0])
    assert pooled["ci"][1] - pooled["ci"][0] < 0.1  # the bases' offsets (0.2 apart) are paired out
    assert pooled["resampled"] == "3 seeds per arm, then 300 test windows"


def test_basin_check_and_the_rung_rule():
    bowl = basin_check([2.0, 1.9, 1.85, 1.9, 2.05])
    assert bowl["soups"] and bowl["midpoint_gain"] == pytest.approx(0.15) and bowl["barrier"] < 0
    bump = basin_check([2.0, 2.3, 2.4, 2.2, 1.9])
    assert not bump["soups"] and bump["barrier"] == pytest.approx(2.4 - 1.95)
    with pytest.raises(ValueError, match="odd number"):
        basin_check([1.0, 2.0])
    # Rungs are probed from the largest learning rate down: the first that soups, else the last.
    assert choose_rung([bump, bump, bowl, bowl]) == 2
    assert choose_rung([bump, bump]) == 1


def test_along_segment_visits_both_ends_and_the_line():
    a, b = decoder_state(0), decoder_state(1)
    model = Decoder(TINY)
    rows = along_segment(model, a, b, [0.0, 0.5, 1.0], lambda m: {"w": float(m.norm.weight.sum())})
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    for name, value in model.state_dict().items():
        assert torch.equal(value, b[name]), name  # the last point is exactly the end
    model.load_state_dict(a)
    assert rows[0]["w"] == float(model.norm.weight.detach().sum())


def test_config_names_are_the_registries():
    """The pure config validates soup and merge names without importing torch: its names are the registries'."""
    from asymptote.merges import MERGES

    assert tuple(SOUPS) == SOUP_METHODS and tuple(MERGES) == MERGE_METHODS
