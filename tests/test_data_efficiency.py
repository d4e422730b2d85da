"""asymptote.data_efficiency: the kept fraction of nanoGPT's split, cut exactly by the flows' own split
(no reported text in training or validation), choices on validation, and the data multiplier's
inversion of the standard law, exact on a synthetic law, refused where the law cannot answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asymptote.config import DataConfig, StoreConfig
from asymptote.corpus import positional_split
from asymptote.data_efficiency import (
    SplitError,
    choose,
    data_multiplier,
    exact_fractions,
    fit_law,
    keep_fraction,
    loss_figures,
    nanogpt_split,
    read_single_text,
)
from asymptote.shards import load_split, prepare_dataset
from asymptote.store import Store


def corpus(n: int, seed: int = 0) -> str:
    """n characters of lines of words, with a few multi-byte characters so cuts can fall inside one."""
    rng = np.random.default_rng(seed)
    words = ["to", "be", "or", "not", "café", "naïve", "—", "ROMEO:", "ſ", "🙂"]
    out, size = [], 0
    while size < n:
        w = words[rng.integers(len(words))] + ("\n" if rng.random() < 0.1 else " ")
        out.append(w)
        size += len(w)
    return "".join(out)[:n]


FRACTIONS = [0.01, 0.125, 0.25, 1 / 3, 0.5, 0.999, 1.0]
LENGTHS = [4_001, 10_007, 65_537, 123_457]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_the_flows_split_of_the_derived_text_is_exactly_train_val_and_the_reported_text(n, fraction):
    text = corpus(n, seed=n)
    split = keep_fraction(text, fraction, val_share=0.1)
    d = split.data_fields()
    train, val, test = (p.encode() for p in positional_split(split.text.decode(), **d))
    training, reported = nanogpt_split(text)
    assert test == reported == text.encode()[len(training) :]  # the flows' test split is nanoGPT's, exactly
    assert train + val == training[: len(train) + len(val)]  # the kept text is a prefix of the training text
    assert train == split.train and val == split.val
    assert len(train) + len(val) <= len(training)  # ends before the reported text starts
    assert len(val) == pytest.approx(0.1 * (len(train) + len(val)), abs=4)  # the slice, to a character
    assert len(train) + len(val) == pytest.approx(fraction * len(training), abs=4)


def test_nanogpt_split_is_parity_benchs_90_10_cut():
    text = corpus(10_007)
    training, reported = nanogpt_split(text)
    blob = text.encode()
    cut = int(len(blob) * 0.9)
    while blob[cut] & 0xC0 == 0x80:  # the flows never cut inside a character
        cut -= 1
    assert training == blob[:cut] and reported == blob[cut:]


@pytest.mark.parametrize("fraction", [0.05, 0.25, 1.0])
def test_the_tokenised_splits_in_the_store_are_exactly_the_intended_bytes(fraction, tmp_path):
    """The same check through the data step every flow runs: tokenise the derived file, read the splits."""
    text = corpus(30_011, seed=3)
    split = keep_fraction(text, fraction, val_share=0.1)
    path = split.write(tmp_path)
    store = Store(StoreConfig(uri=str(tmp_path / "store")))
    rel = prepare_dataset(DataConfig(source=str(path), **split.data_fields()), store)
    got = {s: load_split(store, rel, s).astype(np.uint8).tobytes() for s in ("train", "val", "test")}
    assert got == {"train": split.train, "val": split.val, "test": split.reported}
    _, reported = nanogpt_split(text)
    assert reported not in got["train"] + got["val"] and got["test"] == reported


def test_validation_comes_from_the_end_of_the_kept_text_never_the_reported_split():
    text = corpus(50_000, seed=5)
    training, reported = nanogpt_split(text)
    for fraction in (0.1, 0.5, 1.0):
        s = keep_fraction(text, fraction, val_share=0.2)
        kept = s.train + s.val
        assert kept.endswith(s.val) and training.startswith(kept)
        assert text.encode().index(s.val) + len(s.val) <= len(training)  # it ends where the training text may


def test_the_derived_file_is_named_by_its_content_under_the_temp_dir(tmp_path):
    s = keep_fraction(corpus(9_001), 0.5, 0.1)
    path = s.write(tmp_path)
    assert path.name == f"{s.sha}.txt" and path.read_bytes() == s.text
    assert s.write(tmp_path) == path  # the same content, the same name: cache keys stay stable
    assert keep_fraction(corpus(9_001), 0.25, 0.1).write(tmp_path) != path


def test_fractions_are_exact_or_refused():
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        n = int(rng.integers(3, 10**9))
        a, b = (
            sorted(rng.choice(np.arange(1, n), 2, replace=False))
            if n < 10**6
            else sorted(rng.integers(1, n, 2))
        )
        if a == b:
            continue
        v, t = exact_fractions(n, int(a), int(b))
        assert int(n * (1 - v - t)) == a and int(n * (1 - t)) == b  # what positional_split computes
    with pytest.raises(SplitError, match="every split needs text"):
        exact_fractions(100, 50, 100)


def test_bad_fractions_and_tiny_texts_are_refused():
    with pytest.raises(ValueError, match="fraction=0"):
        keep_fraction(corpus(1000), 0, 0.1)
    with pytest.raises(ValueError, match="val_share"):
        keep_fraction(corpus(1000), 0.5, 1.0)
    with pytest.raises(SplitError, match="empty split"):
        keep_fraction(corpus(1000), 0.001, 0.1)


def test_a_corpus_of_documents_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("one document")
    (tmp_path / "b.txt").write_text("another")
    with pytest.raises(ValueError, match="single text file"):
        read_single_text(str(tmp_path))
    assert read_single_text(str(tmp_path / "a.txt")) == "one document"


# ----------------------------------------------------------------------------- choices and figures


def test_choice_is_the_lowest_validation_loss_and_names_its_edges():
    val = {(1e-3, 1): 2.0, (1e-3, 2): 1.9, (2e-3, 1): 1.95, (2e-3, 2): 1.8, (4e-3, 1): 1.9, (4e-3, 2): 1.85}
    c = choose(val)
    assert (c.lr, c.epochs, c.val_loss) == (2e-3, 2, 1.8) and c.at_edge == ("epochs",)
    assert choose({(1e-3, 1): 2.0}).at_edge == ()  # a one-point grid has no edge to sit on


def test_figures_share_one_bootstrap_and_beat_only_with_the_whole_interval():
    rng = np.random.default_rng(0)
    windows = rng.normal(0, 0.3, 200)
    arms = {"low": [1.7 + windows + rng.normal(0, 0.002) for _ in range(3)]}
    arms["near"] = [1.88 + windows + rng.normal(0, 0.002) for _ in range(3)]
    figs, draws = loss_figures(arms, n_boot=500)
    assert figs["low"].beats(1.886) and not figs["near"].beats(1.886)
    assert figs["low"].ci[0] < figs["low"].estimate < figs["low"].ci[1]
    # the shared windows cancel in a difference: its spread is the seeds', far below either arm's
    assert np.std(draws["near"] - draws["low"]) < 0.5 * np.std(draws["low"])


# ----------------------------------------------------------------------------- the multiplier

E, A, ALPHA = 1.5, 40.0, 0.35
TOKENS = [100_000, 200_000, 400_000, 800_000, 1_600_000]


def synthetic_law(tokens=TOKENS, noise: float = 1e-4, n_boot: int = 400):
    """The law's exact losses, and draws of them with small seed noise."""
    y = np.array([A * d**-ALPHA + E for d in tokens])
    draws = y[None, :] + np.random.default_rng(0).normal(0, noise, (n_boot, len(tokens)))
    return y, draws


def test_the_multiplier_inverts_the_standard_law_exactly():
    y, draws = synthetic_law()
    law = fit_law(TOKENS, y, draws)
    assert law.identified and law.fit.law.E == pytest.approx(E, abs=1e-3)
    used, target = 250_000, 1.62
    m = data_multiplier(law, target, np.full(len(draws), target), used)
    closed = (A / (target - E)) ** (1 / ALPHA) / used  # the true law's D(L) / D_used
    fitted = law.fit.law
    assert m.estimate == pytest.approx(
        (fitted.A / (target - fitted.E)) ** (1 / fitted.alpha) / used, rel=1e-12
    )
    assert m.estimate == pytest.approx(closed, rel=2e-3) and m.reachable
    assert m.ci[0] <= m.estimate <= m.ci[1]
    at_own_loss = data_multiplier(law, float(y[1]), np.full(len(draws), y[1]), TOKENS[1])
    assert at_own_loss.estimate == pytest.approx(1.0, rel=1e-3)  # the law's own point needs its own data


def test_the_multiplier_interval_carries_the_models_loss_draws():
    y, draws = synthetic_law()
    law = fit_law(TOKENS, y, draws)
    sharp = data_multiplier(law, 1.62, np.full(len(draws), 1.62), 250_000)
    noisy = data_multiplier(law, 1.62, 1.62 + np.random.default_rng(1).normal(0, 0.01, len(draws)), 250_000)
    assert noisy.ci[1] - noisy.ci[0] > 3 * (sharp.ci[1] - sharp.ci[0])
    with pytest.raises(ValueError, match="pair draws"):
        data_multiplier(law, 1.62, np.full(7, 1.62), 250_000)


def test_a_loss_below_the_asymptote_is_unreachable_not_a_number():
    y, draws = synthetic_law()
    law = fit_law(TOKENS, y, draws)
    m = data_multiplier(law, E - 0.05, np.full(len(draws), E - 0.05), 250_000)
    assert m.estimate is None and m.reachable is False and m.ci[1] is None
    assert "asymptote" in m.reason
    assert m.to_dict() == {"estimate": None, "ci": [None, None], "reachable": False, "reason": m.reason}


def test_an_unidentified_law_gives_no_multiplier_and_says_why():
    y, draws = synthetic_law(TOKENS[:3])
    law = fit_law(TOKENS[:3], y, draws)  # 3 points for 3 parameters: passes through them exactly
    assert not law.identified and "3 points" in law.reason
    m = data_multiplier(law, 1.62, np.full(len(draws), 1.62), 250_000)
    assert m.estimate is None and m.reachable is None and "not identified" in m.reason
    flat = fit_law(TOKENS, [2.0] * 5, 2.0 + np.random.default_rng(0).normal(0, 1e-3, (200, 5)))
    assert not flat.identified and flat.reason
    assert flat.to_dict()["identified"] is False and math.isfinite(flat.to_dict()["E"])
