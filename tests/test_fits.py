"""Power-law fits: known parameters come back from noisy synthetic curves, intervals cover them,
bad input fails with a message that names the fix, and the data-efficiency inversion is exact."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from asymptote.fits import FitError, PowerLaw, data_multiplier, fit_power_law


def noisy(law: PowerLaw, x, noise: float, seed: int) -> np.ndarray:
    return law(x) + np.random.default_rng(seed).normal(0.0, noise, len(x))


@pytest.mark.parametrize(
    "truth, x",
    [
        (PowerLaw(A=40.0, alpha=0.3, E=2.1), np.geomspace(1e5, 3e7, 7)),  # loss vs parameters
        (PowerLaw(A=0.35, alpha=1.1, E=2.6), np.arange(1, 9)),  # loss vs ensemble members
        (PowerLaw(A=120.0, alpha=0.45, E=1.9), np.geomspace(2e4, 2e6, 6)),  # loss vs tokens
    ],
)
def test_recovers_known_parameters_from_noisy_curves(truth, x):
    fit = fit_power_law(x, noisy(truth, x, 0.002, seed=1), n_boot=400, seed=0)
    assert fit.law.E == pytest.approx(truth.E, abs=0.03)
    assert fit.law.alpha == pytest.approx(truth.alpha, rel=0.15)
    assert fit.law.A == pytest.approx(
        truth.A, rel=0.6
    )  # A trades off against alpha; the curve is what matters
    assert np.allclose(fit.law(x), truth(x), atol=0.01)
    lo, hi = fit.ci["E"]
    assert lo <= truth.E <= hi and lo < fit.law.E < hi


def test_exact_three_points_need_sigma_and_then_cover_the_truth():
    truth = PowerLaw(A=5.0, alpha=0.5, E=3.0)
    x = np.array([1e4, 1e5, 1e6])
    with pytest.raises(FitError, match="sigma"):
        fit_power_law(x, truth(x), n_boot=50)
    fit = fit_power_law(x, truth(x), sigma=0.01, n_boot=300)
    assert (fit.law.A, fit.law.alpha, fit.law.E) == pytest.approx((5.0, 0.5, 3.0), rel=1e-4)
    assert fit.ci["E"][0] < 3.0 < fit.ci["E"][1]


def test_parameters_are_never_negative():
    # A/x^alpha + E with A, alpha >= 0 cannot rise, so the best fit to rising points is their mean.
    rising = fit_power_law([1, 2, 3, 4], [1.0, 1.5, 2.0, 2.5], n_boot=50)
    assert rising.law.A >= 0 and rising.law.alpha >= 0 and rising.law.E >= 0
    assert np.all(rising.samples >= 0)
    assert rising.law(1) == pytest.approx(rising.law(4), abs=1e-6)
    assert rising.law(2) == pytest.approx(1.75, abs=1e-6)


@pytest.mark.parametrize(
    "x, y, match",
    [
        ([1, 2], [3.0, 2.0], "at least 3"),
        ([1, 1, 2, 2], [3.0, 3.0, 2.0, 2.0], "distinct"),
        ([0, 1, 2], [3.0, 2.0, 1.0], "positive"),
        ([1, 2, 3], [3.0, math.nan, 1.0], "finite"),
    ],
)
def test_bad_points_name_the_problem(x, y, match):
    with pytest.raises(FitError, match=match):
        fit_power_law(x, y, sigma=0.01, n_boot=10, what="regularized_N")


def test_bootstrap_is_reproducible_with_its_seed():
    x = np.geomspace(1e5, 1e7, 5)
    y = noisy(PowerLaw(20.0, 0.25, 2.0), x, 0.003, seed=2)
    a, b = fit_power_law(x, y, n_boot=100, seed=7), fit_power_law(x, y, n_boot=100, seed=7)
    c = fit_power_law(x, y, n_boot=100, seed=8)
    assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, c.samples)


def test_inverse_and_data_multiplier_are_exact_on_a_known_law():
    law = PowerLaw(A=30.0, alpha=0.4, E=2.2)
    budgets = np.array([5e4, 1e5, 2e5, 4e5, 8e5])
    fit = fit_power_law(budgets, law(budgets), sigma=0.002, n_boot=300)
    assert law.inverse(law(3e5)) == pytest.approx(3e5, rel=1e-9)
    target = fit.law(1e5 * 3.7)  # a loss the recipe reaches with 3.7x the base budget
    m = data_multiplier(fit, target, base_budget=1e5)
    assert m.value == pytest.approx(3.7, rel=1e-6) and m.reachable
    assert m.ci[0] < 3.7 < m.ci[1]


def test_a_multiplier_interval_that_misses_its_estimate_is_stretched_to_reach_it():
    """Refits piled away from the central fit (here: every draw's E moved up) put the whole percentile
    interval above the estimate; the reported interval must still hold the estimate, and say so."""
    law = PowerLaw(A=30.0, alpha=0.4, E=2.2)
    budgets = np.geomspace(5e4, 8e5, 5)
    fit = fit_power_law(budgets, law(budgets), sigma=0.002, n_boot=200)
    target = fit.law(1e5 * 3.7)
    honest = data_multiplier(fit, target, base_budget=1e5)
    biased = dataclasses.replace(fit, samples=fit.samples + np.array([0.0, 0.0, 0.01]))
    m = data_multiplier(biased, target, base_budget=1e5)
    assert not honest.widened
    assert m.value == pytest.approx(3.7, rel=1e-6)
    assert m.widened and m.ci[0] == pytest.approx(m.value) and m.ci[1] > m.value
    assert m.to_dict()["widened"] is True


def test_targets_below_the_asymptote_are_unreachable():
    law = PowerLaw(A=30.0, alpha=0.4, E=2.2)
    budgets = np.geomspace(5e4, 8e5, 5)
    fit = fit_power_law(budgets, law(budgets), sigma=0.002, n_boot=100)
    m = data_multiplier(fit, 2.0, base_budget=1e5)
    assert not m.reachable and math.isinf(m.value)
    assert m.to_dict()["value"] is None and m.to_dict()["reachable"] is False
    assert math.isinf(law.inverse(2.2))


# ----------------------------------------------------------------------------- fits bootstrapped from seeds


def test_seed_bootstrap_interval_covers_the_true_asymptote_in_90_of_100_draws():
    """Five sizes, three seeds each, Gaussian seed noise of known size: the 95% interval from the
    resampled seed deviations must cover the true asymptote in at least 90 of 100 independent studies."""
    from asymptote.fits import fit_seed_draws, seed_deviations, seed_mean_noise

    x = np.array([13_128, 20_640, 49_160, 67_824, 115_520], dtype=float)
    law = PowerLaw(0.5 * x[0] ** 0.5, 0.5, 1.8)
    covered = 0
    for study in range(100):
        rng = np.random.default_rng(study)
        losses = law(x)[:, None] + rng.normal(0.0, 0.01, (len(x), 3))
        noise = seed_mean_noise([3] * len(x), seed_deviations(losses), 300, rng)
        fit = fit_seed_draws(x, losses.mean(axis=1), noise)
        lo, hi = fit.ci["E"]
        covered += lo <= law.E <= hi
    assert covered >= 90, covered


def test_three_points_for_three_parameters_are_not_identified():
    from asymptote.fits import fit_seed_draws, identification

    x = [1e4, 3e4, 1e5]
    y = PowerLaw(10.0, 0.3, 2.0)(x)
    fit = fit_seed_draws(x, y, np.random.default_rng(0).normal(0, 0.005, (200, 3)))
    assert not fit.identified and "3 points for 3 parameters" in fit.reason
    assert "bound" in identification(5, PowerLaw(7e39, 10.0, 3.3))
    assert "flat" in identification(5, PowerLaw(0.0, 0.5, 3.3))
    assert "asymptote at its bound 0" in identification(5, PowerLaw(3.3, 0.001, 0.0))
    assert identification(5, PowerLaw(10.0, 0.3, 2.0)) == ""


def test_seed_noise_needs_replicas():
    from asymptote.fits import seed_deviations, seed_mean_noise

    assert len(seed_deviations([[2.0], [2.1]])) == 0  # one seed per point: nothing measured
    with pytest.raises(FitError, match="at least 2 seed deviations"):
        seed_mean_noise([1, 1], seed_deviations([[2.0], [2.1]]), 10, np.random.default_rng(0))
    dev = seed_deviations([[1.0, 3.0]])
    assert dev.tolist() == pytest.approx([-math.sqrt(2), math.sqrt(2)])  # unbiased: variance 2 = s^2
