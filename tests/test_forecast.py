"""Loss-curve forecasting: outlier removal, the exponential fit, extrapolation, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.forecast import (
    ExpFit,
    denoise,
    denoise_reference,
    drop_outliers,
    fit_exponential,
    forecast,
    noise_scale,
)

A, B, C = 1.5, -0.02, 2.0


def _curve(n=200, sigma=0.03, spikes=(5, 17, 40), seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    clean = A * np.exp(B * x) + C
    y = clean + rng.normal(0, sigma, n)
    y[list(spikes)] += 1.0  # loss spikes right after an LR change
    return x, y, clean


def test_fit_recovers_a_b_c_of_a_noisy_exponential():
    x, y, _ = _curve()
    fit = fit_exponential(*denoise(x, y))
    assert fit.a == pytest.approx(A, rel=0.05)
    assert fit.b == pytest.approx(B, rel=0.05)
    assert fit.c == pytest.approx(C, abs=0.02)


def test_forecast_extrapolates_far_beyond_the_trial():
    x, y, _ = _curve()
    assert forecast(x, y, horizon=1000) == pytest.approx(C + A * np.exp(B * 1000), abs=0.02)
    # later absolute steps (a trial that starts at step 5000) give the same answer without overflow
    assert forecast(x + 5000, y, horizon=6000) == pytest.approx(forecast(x, y, horizon=1000), abs=1e-6)


def test_outlier_removal_drops_the_spikes_and_keeps_the_tail():
    x, y, clean = _curve()
    kept, _ = drop_outliers(x, y)
    assert {5.0, 17.0, 40.0}.isdisjoint(kept)
    assert set(x[x >= 100]) <= set(kept)  # the protected tail is never touched
    kept_x, smooth = denoise(x, y)
    assert np.abs(smooth - clean[kept_x.astype(int)]).max() < 0.06  # far below the 1.0 spikes
    assert noise_scale(y) == pytest.approx(0.03, rel=0.25)


def test_without_denoising_the_spikes_bias_the_fit():
    x, y, _ = _curve()
    raw, clean = fit_exponential(x, y), fit_exponential(*denoise(x, y))
    assert abs(clean.a - A) < abs(raw.a - A)


@pytest.mark.parametrize("seed", range(6))
def test_fit_recovers_a_b_c_when_the_time_constant_is_ten_windows(seed):
    """The AutoLRS case: a trial of n steps, scored at 10 n. The curve bends by only a/200 within the
    window, so a, b and c are identifiable only with noise well below that (here 2e-4 against 7.5e-3);
    a fit whose decay time is capped at the window (the old code) cannot get b at all."""
    n, b = 200, -1 / 2000
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    y = A * np.exp(b * x) + C + rng.normal(0, 2e-4, n)
    y[[5, 17, 40]] += 0.3  # spikes that denoising must remove first
    fit = fit_exponential(*denoise(x, y))
    assert fit.b == pytest.approx(b, rel=0.1)
    assert fit.a == pytest.approx(A, rel=0.1)
    assert fit.c == pytest.approx(C, abs=0.1)
    assert forecast(x, y, horizon=10 * n) == pytest.approx(A * np.exp(-1) + C, abs=0.03)


def test_a_straight_line_is_extrapolated_as_one():
    """b is free: a curve with no bend is a line, and a line is what the forecast continues (the
    controller, not the forecast, clips a score below zero)."""
    x = np.arange(20, dtype=float)
    y = 3.3 - 0.02 * x
    assert forecast(x, y, horizon=100) == pytest.approx(3.3 - 0.02 * 100, abs=0.02)


def test_the_reference_denoiser_is_one_quadratic_on_losses_of_order_one():
    """scipy's default smoothing (s = number of points) leaves a quadratic across the whole window when
    the noise is far below 1, so a curve that bends over four time constants is forecast off; the
    robust denoiser (smoothing scaled to the measured noise) follows it. docs/autolrs.md measures both
    on real trials."""
    x, y, _ = _curve()
    xs, smooth = denoise_reference(x, y)
    assert np.array_equal(xs, x)  # the reference evaluates its spline at every step
    truth = C + A * np.exp(B * 1000)
    reference, robust = forecast(x, y, 1000, denoiser="reference"), forecast(x, y, 1000)
    assert abs(robust - truth) < 0.02 < abs(reference - truth)
    with pytest.raises(ValueError, match="allowed: robust, reference"):
        forecast(x, y, horizon=1000, denoiser="median")


def test_validation_series_of_few_points():
    x = np.arange(1, 17, dtype=float) * 10
    y = 0.8 * np.exp(-0.01 * x) + 1.7
    assert forecast(x, y, horizon=320, validation=True) == pytest.approx(0.8 * np.exp(-3.2) + 1.7, abs=1e-3)


def test_exp_fit_evaluates_around_its_origin():
    fit = ExpFit(a=2.0, b=-0.5, c=1.0, t0=10.0)
    assert fit.at(10.0) == pytest.approx(3.0) and fit.at(1e6) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "steps, losses, match",
    [
        ([0, 1, 2], [3.0, 2.9, 2.8], "at least 5"),
        ([0, 1, 2, 3, 4], [3.0, 2.9, float("nan"), 2.7, 2.6], "finite"),
        ([0, 1, 2, 2, 4], [3.0, 2.9, 2.8, 2.7, 2.6], "increasing"),
        ([0, 1, 2, 3], [3.0, 2.9, 2.8, 2.7, 2.6], "equal length"),
    ],
)
def test_bad_series_are_refused_with_the_reason(steps, losses, match):
    with pytest.raises(ValueError, match=match):
        forecast(steps, losses, horizon=100)
