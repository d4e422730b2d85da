"""Forecast where a short loss curve is heading: denoise it, fit L(t) = a exp(b t) + c (b < 0), extrapolate.

AutoLRS scores a candidate learning rate by the loss a short trial *would* reach after a much longer
stretch of training. Raw per-step losses are noisy and spiky, so the curve is first cleaned (points far
from a smoothing spline of its running median are dropped, then a smoothing spline of what is left
stands in for the data), then an exponential with a floor is fitted with its rate b free, as the reference
code of AutoLRS does: for a fixed b the best (a, c) is linear least squares, so only b is searched, on a
wide log grid refined by a bounded scalar minimisation. docs/autolrs.md says where this departs from the
reference (the denoiser) and why.

Pure numpy/scipy: no torch, no Ray, no Prefect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import UnivariateSpline
from scipy.ndimage import median_filter
from scipy.optimize import minimize_scalar

from asymptote.autolrs_config import MIN_POINTS


@dataclass(frozen=True)
class ExpFit:
    """L(t) = a exp(b t) + c with b < 0: `c` is the level the curve tends to, `a` how far above it starts."""

    a: float
    b: float
    c: float
    t0: float = 0.0
    """Origin of t: the fit is a exp(b (t - t0)) + c, so that far-away steps never overflow exp."""

    def at(self, t: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.exp(self.b * (np.asarray(t, dtype=float) - self.t0)) + self.c


def _check_series(steps, losses) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"steps and losses must be 1-D and of equal length, got {xs.shape} and {ys.shape}")
    if len(xs) < MIN_POINTS:
        raise ValueError(
            f"a forecast needs at least {MIN_POINTS} loss points, got {len(xs)}; run longer trials"
        )
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("steps and losses must be finite; a diverged trial cannot be forecast")
    if np.any(np.diff(xs) <= 0):
        raise ValueError("steps must be strictly increasing")
    return xs, ys


def noise_scale(ys: np.ndarray) -> float:
    """Robust standard deviation of the noise on a smooth trend.

    Third differences all but cancel a smooth trend (even a sparsely sampled, fast-bending one) and
    leave white noise of variance 20 sigma^2; their median absolute deviation ignores the spikes
    that outlier removal is for.
    """
    d = np.diff(ys, n=3)
    mad = np.median(np.abs(d - np.median(d))) if len(d) else 0.0
    return float(mad / 0.6745 / math.sqrt(20))


def _spline(xs: np.ndarray, ys: np.ndarray, degree: int) -> UnivariateSpline:
    # Smoothing budget = points x noise variance: the spline follows the trend, not the noise.
    s = len(xs) * max(noise_scale(ys), 1e-12) ** 2
    return UnivariateSpline(xs, ys, k=degree, s=s)


def drop_outliers(
    xs: np.ndarray,
    ys: np.ndarray,
    rounds: int = 3,
    threshold: float = 3.0,
    protected_tail: float = 0.5,
    degree: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop points far from a smoothing spline of the curve's running median, a few rounds over.

    The spline goes through the running median, not the points, so that a spike cannot pull the
    reference curve towards itself and hide. A point goes when it sits more than `threshold` robust
    standard deviations off. Only points before the protected tail may go: the spikes that mislead
    a fit come early, right after the learning rate changed, and the tail anchors the extrapolation.
    """
    for _ in range(rounds):
        if len(xs) <= MIN_POINTS:
            break
        trend = _spline(xs, median_filter(ys, size=5, mode="nearest"), degree)(xs)
        dev = np.abs(ys - trend)
        # Robust sigma, floored so that rounding errors on a noise-free curve are never "outliers".
        sigma = max(1.4826 * np.median(dev), noise_scale(ys), 1e-9 * (1.0 + float(np.ptp(ys))))
        cut = xs[0] + (xs[-1] - xs[0]) * (1 - protected_tail)
        bad = (dev > threshold * sigma) & (xs < cut)
        if not bad.any() or len(xs) - bad.sum() < MIN_POINTS:
            break
        xs, ys = xs[~bad], ys[~bad]
    return xs, ys


def denoise(steps, losses, rounds: int = 3, degree: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(steps kept, smoothed loss there): outliers removed, noise smoothed away by a spline.

    The dropped steps are left out rather than filled in from the spline: a sparse validation
    curve would otherwise be fitted to interpolation error where it bends most.
    """
    xs, ys = _check_series(steps, losses)
    kept_x, kept_y = drop_outliers(xs, ys, rounds, degree=degree)
    return kept_x, _spline(kept_x, kept_y, degree)(kept_x)


def _linear_part(xs: np.ndarray, ys: np.ndarray, b: float) -> tuple[float, float, float]:
    """For a fixed rate b: the least-squares (a, c) and the residual sum of squares."""
    design = np.stack([np.exp(b * xs), np.ones_like(xs)], axis=1)
    (a, c), *_ = np.linalg.lstsq(design, ys, rcond=None)
    return float(a), float(c), float(np.sum((design @ [a, c] - ys) ** 2))


SLOWEST_RATE = 1e-4
"""Slowest decay searched, per window length: below it exp(b t) is a straight line to 1e-4 of a over ten
windows, so the fit is as free as floating point makes it (the reference searches b without bounds)."""


def fit_exponential(steps, losses) -> ExpFit:
    """Least-squares fit of a exp(b (t - t0)) + c with b < 0 to (steps, losses), t0 the first step.

    b is free, as in the reference code: the decay time 1/|b| may be far longer than the curve (a trial
    of tau' steps forecast at tau = 10 tau' needs exactly that), from a tenth of a step spacing up to
    1/SLOWEST_RATE windows. For a fixed b the best (a, c) is linear least squares, so only b is
    searched: on a log grid first (the residual is not unimodal in b in general), then refined.
    A curve that has not bent within the window is extrapolated as the straight line it is.
    """
    xs, ys = _check_series(steps, losses)
    t = xs - xs[0]
    span = max(t[-1], 1.0)
    lo, hi = math.log(SLOWEST_RATE / span), math.log(10.0 / max(np.min(np.diff(t)), 1e-9))

    def rss(u):
        return _linear_part(t, ys, -math.exp(u))[2]

    grid = np.linspace(lo, hi, 128)
    best = int(np.argmin([rss(u) for u in grid]))
    bracket = (grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)])
    u = minimize_scalar(rss, bounds=bracket, method="bounded", options={"xatol": 1e-6}).x
    b = -math.exp(u)
    a, c, _ = _linear_part(t, ys, b)
    return ExpFit(a=a, b=b, c=c, t0=float(xs[0]))


def denoise_reference(steps, losses, validation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The reference code's denoiser, for comparison: iterated quadratic splines with scipy's default
    smoothing (s = number of points, which for losses of order 1 with noise far below 1 is nearly one
    quadratic over the whole window); each round drops the 3% of points farthest from it (one point on
    a validation series, one round only), in the first half only; the spline of what is left stands in
    for every step."""
    xs, ys = _check_series(steps, losses)
    kx, ky = xs, ys
    cut = xs[int((len(xs) - 1) * 0.5)]
    for _ in range(1 if validation else 10):
        dev = np.abs(ky - UnivariateSpline(kx, ky, k=2)(kx))
        n = 1 if validation else int(round(len(kx) * 0.03))
        worst = np.argsort(dev)[len(dev) - n :] if n else np.array([], dtype=int)
        keep = np.ones(len(kx), dtype=bool)
        keep[worst[kx[worst] < cut]] = False
        if keep.sum() < MIN_POINTS:
            break
        kx, ky = kx[keep], ky[keep]
    return xs, UnivariateSpline(kx, ky, k=2)(xs)


DENOISERS = ("robust", "reference")


def forecast(steps, losses, horizon: float, validation: bool = False, denoiser: str = "robust") -> float:
    """The loss the curve is forecast to reach at step `horizon` (same axis as `steps`).

    Training losses are per-batch and spiky: three rounds of outlier removal. Validation losses are
    few and smooth: one round. `denoiser="reference"` cleans the curve as the reference code does.
    """
    if denoiser == "reference":
        xs, smooth = denoise_reference(steps, losses, validation)
    elif denoiser == "robust":
        xs, smooth = denoise(steps, losses, rounds=1 if validation else 3)
    else:
        raise ValueError(f"denoiser={denoiser!r}: unknown; allowed: {', '.join(DENOISERS)}")
    return float(fit_exponential(xs, smooth).at(horizon))
