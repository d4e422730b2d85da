"""The hierarchical bootstrap: coverage on simulated studies, pairing, p_direction, input errors."""

import numpy as np
import pytest

from asymptote import stats

TRUE_MEAN = 2.0
STUDIES = 300
# Coverage over 300 studies has a binomial standard error of sqrt(0.95 * 0.05 / 300) ~ 0.013, so
# [0.90, 0.99] is about 4 standard errors below nominal and wide enough above it for the small
# conservatism the t correction adds when window noise is also present; a plain seed bootstrap with
# 3 seeds covers about 0.84 here and fails the lower bound.
COVERAGE_BAND = (0.90, 0.99)


def simulated_seeds(rng, n_seeds, n_windows=64, seed_sd=0.05, window_sd=0.3, noise_sd=0.05, shift=0.0):
    """Window losses of `n_seeds` trained models on one test split drawn from the population.

    Windows share an effect across seeds (same text), each seed adds its own offset (seed noise)
    and a little seed-by-window noise. The population mean is TRUE_MEAN + shift.
    """
    windows = rng.normal(0, window_sd, n_windows)
    offsets = rng.normal(0, seed_sd, n_seeds)
    return [TRUE_MEAN + shift + o + windows + rng.normal(0, noise_sd, n_windows) for o in offsets]


def covers(fig, value):
    return fig["ci"][0] <= value <= fig["ci"][1]


@pytest.mark.parametrize("n_seeds", [3, 10])
def test_interval_of_the_mean_covers_the_true_mean_at_about_its_nominal_rate(n_seeds):
    rng = np.random.default_rng(n_seeds)
    hits = 0
    for i in range(STUDIES):
        arms = {"model": simulated_seeds(rng, n_seeds)}
        draws = stats.resample(arms, n_boot=500, seed=i)["model"]
        hits += covers(stats.figure(stats.point(arms)["model"], draws), TRUE_MEAN)
    assert COVERAGE_BAND[0] <= hits / STUDIES <= COVERAGE_BAND[1]


def test_seed_noise_alone_is_covered_with_three_seeds():
    """No window noise at all: the interval must come from the seeds (this is where 3 seeds undercover)."""
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(STUDIES):
        arms = {"model": simulated_seeds(rng, 3, window_sd=0.0, noise_sd=0.01)}
        draws = stats.resample(arms, n_boot=500, seed=i)["model"]
        hits += covers(stats.figure(stats.point(arms)["model"], draws), TRUE_MEAN)
    assert COVERAGE_BAND[0] <= hits / STUDIES <= COVERAGE_BAND[1]


def paired_study(rng, n_seeds, gain):
    """Base i gives a reference and a candidate that share its seed offset; the candidate is `gain` lower."""
    windows = rng.normal(0, 0.3, 64)
    offsets = rng.normal(0, 0.2, n_seeds)  # large shared base noise: pairing must cancel it
    ref = [TRUE_MEAN + o + windows + rng.normal(0, 0.02, 64) for o in offsets]
    effect = gain + rng.normal(0, 0.01, n_seeds)  # the gain itself varies a little by base
    cand = [r - e + rng.normal(0, 0.02, 64) for r, e in zip(ref, effect, strict=True)]
    return {"reference": ref, "candidate": cand}


def test_difference_of_paired_arms_covers_the_true_gain_and_pairing_narrows_it():
    rng = np.random.default_rng(3)
    gain, hits, widths = 0.05, 0, {True: [], False: []}
    for i in range(STUDIES):
        arms = paired_study(rng, 3, gain)
        est = stats.point(arms)
        for paired in (True, False):
            d = stats.resample(arms, n_boot=500, seed=i, paired_seeds=paired)
            fig = stats.figure(est["reference"] - est["candidate"], d["reference"] - d["candidate"])
            widths[paired].append(fig["ci"][1] - fig["ci"][0])
            hits += paired and covers(fig, gain)
    assert COVERAGE_BAND[0] <= hits / STUDIES <= COVERAGE_BAND[1]
    assert np.median(widths[True]) < 0.5 * np.median(widths[False])


def test_windows_are_paired_across_arms():
    """Two arms that differ by a constant on every window: every draw's difference is that constant."""
    rng = np.random.default_rng(0)
    base = [rng.normal(2, 0.5, 100)]
    d = stats.resample({"a": base, "b": [base[0] + 0.1]}, n_boot=200)
    np.testing.assert_allclose(d["b"] - d["a"], 0.1)


def test_one_seed_resamples_windows_only():
    rng = np.random.default_rng(1)
    losses = rng.normal(2, 0.4, 400)
    draws = stats.resample({"model": [losses]}, n_boot=4000)["model"]
    # The bootstrap spread of a mean of 400 windows: sd / sqrt(400), within sampling error.
    assert draws.std() == pytest.approx(losses.std() / 20, rel=0.1)
    assert stats.resample({"model": [np.full(50, 2.5)]}, n_boot=100)["model"] == pytest.approx(2.5)
    assert "no seed noise" in stats.resampled({"model": [losses]})


def test_resampled_names_seeds_then_windows():
    arms = {"a": [np.ones(512)] * 3, "b": [np.ones(512)] * 3}
    assert stats.resampled(arms) == "3 seeds per arm, then 512 test windows"


def test_point_is_mean_over_seeds_of_window_means():
    assert stats.point({"a": [np.array([1.0, 3.0]), np.array([4.0, 6.0])]}) == {"a": 3.5}


def test_figure_p_direction_is_the_share_on_the_estimates_side():
    draws = np.array([-1.0, 1.0, 2.0, 3.0])
    assert stats.figure(1.5, draws)["p_direction"] == 0.75
    assert stats.figure(-0.5, draws)["p_direction"] == 0.25
    assert stats.figure(1.5, draws, null=2.5)["p_direction"] == 0.75  # 1.5 < 2.5: draws below 2.5
    fig = stats.figure(0.2, np.linspace(0.1, 0.3, 1001))
    assert fig["p_direction"] == 1.0
    assert fig["ci"] == pytest.approx([0.105, 0.295])
    assert set(fig) == {"estimate", "ci", "p_direction"}


def test_figure_ignores_undefined_draws():
    fig = stats.figure(1.0, np.array([1.0, np.nan, np.inf, 1.0]))
    assert fig["ci"] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("arms", "kwargs", "named"),
    [
        ({}, {}, "arms"),
        ({"a": []}, {}, "arms['a']"),
        ({"a": [np.array([])]}, {}, "arms['a'][0]"),
        ({"a": [np.ones((2, 2))]}, {}, "arms['a'][0]"),
        ({"a": [np.ones(3)], "b": [np.ones(4)]}, {}, "arms['b'][0]"),
        ({"a": [np.ones(3), np.ones(5)]}, {}, "arms['a'][1]"),
        ({"a": [np.array([1.0, np.nan])]}, {}, "arms['a'][0]"),
        ({"a": [np.ones(3)] * 2, "b": [np.ones(3)] * 3}, {"paired_seeds": True}, "paired_seeds"),
        ({"a": [np.ones(3)]}, {"n_boot": 0}, "n_boot"),
    ],
)
def test_bad_input_names_the_argument(arms, kwargs, named):
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        stats.resample(arms, **kwargs)


def test_figure_rejects_empty_draws_and_bad_level():
    with pytest.raises(ValueError, match="draws"):
        stats.figure(0.0, np.array([]))
    with pytest.raises(ValueError, match="level"):
        stats.figure(0.0, np.ones(3), level=1.5)


def test_t_quantile_past_the_table_is_continuous():
    assert stats.t975(31) == pytest.approx(2.040, abs=0.002)
    assert stats.t975(1000) == pytest.approx(1.962, abs=0.001)
