"""Saturating power laws L(x) = A / x^alpha + E, fitted with non-negative parameters, with bootstrap CIs.

One law serves every fit of "Pre-training under infinite compute": loss against parameters N (E is a
recipe's asymptote), against ensemble members K (the asymptote is called C there), and against the
token budget D (inverted to say how much more data a recipe would need to reach a target loss).

x is rescaled by its smallest value before fitting so the optimiser sees numbers near 1 whatever the
units (parameters ~1e5..1e9, tokens ~1e5..1e10); A is mapped back afterwards. Confidence intervals
come from a seeded bootstrap: residuals are resampled when there are more points than parameters,
and per-point noise (sigma, e.g. seed-to-seed spread) is added where it is known. Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

PARAMS = ("A", "alpha", "E")
MAX_EXPONENT = 10.0  # bounds alpha so that a near-degenerate 3-point fit cannot overflow x^alpha
_ALPHA_GRID = np.concatenate([[0.0], np.geomspace(1e-3, MAX_EXPONENT, 160)])  # the fit is non-convex in alpha
_ZOOM_ROUNDS, _ZOOM_POINTS = 6, 21  # each round narrows the bracket tenfold: alpha to ~1e-7 relative


class FitError(ValueError):
    """The points cannot support the requested fit (too few, non-finite, or non-positive x)."""


@dataclass(frozen=True)
class PowerLaw:
    """L(x) = A / x^alpha + E."""

    A: float
    alpha: float
    E: float

    def __call__(self, x) -> np.ndarray:
        return self.A * np.asarray(x, dtype=float) ** -self.alpha + self.E

    def inverse(self, loss: float) -> float:
        """The x at which the law reaches `loss`; inf when loss is at or below the asymptote."""
        gap = loss - self.E
        if gap <= 0 or self.A <= 0 or self.alpha <= 0:
            return math.inf
        return (self.A / gap) ** (1.0 / self.alpha)


@dataclass
class Fit:
    """A fitted law, its data, and bootstrap intervals for each parameter."""

    law: PowerLaw
    x: list[float]
    y: list[float]
    ci: dict[str, tuple[float, float]]
    level: float
    samples: np.ndarray = field(repr=False)  # (n_boot, 3) bootstrap draws of (A, alpha, E)
    rmse: float = 0.0

    @property
    def asymptote(self) -> float:
        return self.law.E

    def to_dict(self) -> dict:
        return {
            "A": self.law.A,
            "alpha": self.law.alpha,
            "E": self.law.E,
            "rmse": self.rmse,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "level": self.level,
            "n_points": len(self.x),
            "n_boot": int(len(self.samples)),
            "x": self.x,
            "y": self.y,
        }


def _check_points(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if x.shape != y.shape or x.ndim != 1:
        raise FitError(f"{what}: x and y must be 1-D and of equal length, got {x.shape} and {y.shape}")
    if len(x) < len(PARAMS):
        raise FitError(
            f"{what}: {len(x)} point(s) cannot fit the {len(PARAMS)} parameters of A/x^alpha+E; "
            f"need at least {len(PARAMS)} distinct x values (add sizes, members or budgets)"
        )
    if len(np.unique(x)) < len(PARAMS):
        raise FitError(
            f"{what}: x has only {len(np.unique(x))} distinct values {sorted(set(x.tolist()))}; "
            f"need at least {len(PARAMS)}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(x <= 0):
        raise FitError(
            f"{what}: x must be positive and finite and y finite, got x={x.tolist()} y={y.tolist()}"
        )


def _nonneg_linear(u: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares (A, E) >= 0 of y ~ A*u + E along the last axis, broadcast over the rest.

    Two unknowns, so the non-negative optimum is the free solution, or A = 0, or E = 0.
    Returns (A, E, cost), each of u's shape without its last axis.
    """
    w2 = w**2
    sw, su, sy = w2.sum(), (w2 * u).sum(-1), (w2 * y).sum(-1)
    suu, suy = (w2 * u * u).sum(-1), (w2 * u * y).sum(-1)
    det = suu * sw - su**2
    safe = np.where(np.abs(det) > 1e-300, det, np.inf)
    zeros = np.zeros(np.broadcast_shapes(su.shape, sy.shape))
    candidates = [
        ((suy * sw - su * sy) / safe, (suu * sy - su * suy) / safe),  # both free
        (zeros, np.maximum(sy / sw, 0.0) + zeros),  # A = 0: E is the weighted mean
        (np.maximum(suy / np.maximum(suu, 1e-300), 0.0), zeros),
    ]  # E = 0
    best_a, best_e, best_c = zeros.copy(), zeros.copy(), np.full(zeros.shape, np.inf)
    for a, e in candidates:
        cost = (w2 * (a[..., None] * u + e[..., None] - y) ** 2).sum(-1)
        better = (a >= 0) & (e >= 0) & (cost < best_c)
        best_a, best_e, best_c = (
            np.where(better, a, best_a),
            np.where(better, e, best_e),
            np.where(better, cost, best_c),
        )
    return best_a, best_e, best_c


def _solve(xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Best (A, alpha, E) >= 0 for each row of ys (shape (B, n)) in rescaled x; returns (B, 3).

    For fixed alpha the law is linear in (A, E) (variable projection), so only alpha is searched:
    a global grid, then a few rounds of zooming into the best bracket, all vectorised over rows.
    """
    rows = np.arange(len(ys))
    lo = np.zeros(len(ys))
    hi = np.full(len(ys), MAX_EXPONENT)
    grid = np.broadcast_to(_ALPHA_GRID, (len(ys), len(_ALPHA_GRID)))
    for _ in range(_ZOOM_ROUNDS + 1):
        cost = _nonneg_linear(xs ** -grid[..., None], ys[:, None, :], w)[2]
        i = np.argmin(cost, axis=1)
        lo = grid[rows, np.maximum(i - 1, 0)]
        hi = grid[rows, np.minimum(i + 1, grid.shape[1] - 1)]
        best = grid[rows, i]
        grid = np.linspace(lo, hi, _ZOOM_POINTS, axis=1)
    a, e, _ = _nonneg_linear(xs ** -best[:, None], ys, w)
    return np.stack([a, best, e], axis=1)


def _unscale(p: np.ndarray, x_ref: float) -> np.ndarray:
    return np.array([p[0] * x_ref ** p[1], p[1], p[2]])


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    sigma: Sequence[float] | float | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    what: str = "fit",
) -> Fit:
    """Fit L(x) = A / x^alpha + E with A, alpha, E >= 0 and bootstrap a `level` interval for each.

    sigma: per-point standard deviation of y (or one for all). It weights the fit and is the noise the
    bootstrap adds; it is required when there are only as many points as parameters (the fit is then
    exact and its residuals say nothing about uncertainty).
    """
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    _check_points(x_arr, y_arr, what)
    sig = None if sigma is None else np.broadcast_to(np.asarray(sigma, dtype=float), x_arr.shape).copy()
    if sig is not None and (not np.all(np.isfinite(sig)) or np.any(sig < 0)):
        raise FitError(f"{what}: sigma must be finite and >= 0, got {sig.tolist()}")
    x_ref = float(x_arr.min())
    xs = x_arr / x_ref
    w = 1.0 / np.maximum(sig, 1e-12) if sig is not None and np.all(sig > 0) else np.ones_like(y_arr)
    p = _solve(xs, y_arr[None, :], w)[0]
    law = PowerLaw(*_unscale(p, x_ref))
    fitted = p[0] * xs ** -p[1] + p[2]
    samples = _bootstrap(xs, y_arr, p, w, sig, n_boot, seed, x_ref, what)
    ci = {name: _interval(samples[:, i], level) for i, name in enumerate(PARAMS)}
    rmse = float(np.sqrt(np.mean((fitted - y_arr) ** 2)))
    return Fit(law=law, x=x_arr.tolist(), y=y_arr.tolist(), ci=ci, level=level, samples=samples, rmse=rmse)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; `inverted_cdf` picks actual draws, so infinite draws stay infinite."""
    if not len(draws):
        return (math.nan, math.nan)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    lo, hi = np.percentile(draws, q, method="inverted_cdf")
    return float(lo), float(hi)


def _bootstrap(xs, y, params, w, sig, n_boot: int, seed: int, x_ref: float, what: str) -> np.ndarray:
    """Refit on y* = fitted + resampled residuals (+ N(0, sigma)); returns the unscaled draws."""
    n, p = len(y), len(PARAMS)
    fitted = params[0] * xs ** -params[1] + params[2]
    resid = (y - fitted) - (y - fitted).mean()
    if n <= p and (sig is None or not np.any(sig > 0)):
        raise FitError(
            f"{what}: {n} points fit {p} parameters exactly, so the bootstrap needs per-point "
            "sigma (e.g. the seed-to-seed spread of losses); pass sigma or add points"
        )
    if n_boot < 1:
        raise FitError(f"{what}: n_boot={n_boot} must be >= 1")
    rng = np.random.default_rng(seed)
    inflate = math.sqrt(n / (n - p)) if n > p else 0.0  # residuals of a p-parameter fit underestimate noise
    y_star = fitted + inflate * rng.choice(resid, size=(n_boot, n), replace=True)
    if sig is not None:
        y_star = y_star + rng.normal(0.0, 1.0, size=(n_boot, n)) * sig
    q = _solve(xs, y_star, w)
    return np.stack([q[:, 0] * x_ref ** q[:, 1], q[:, 1], q[:, 2]], axis=1)


# ----------------------------------------------------------------------------- data efficiency


@dataclass(frozen=True)
class Multiplier:
    """How many times the base budget the fitted recipe needs to reach a target loss."""

    value: float  # inf when the target lies at or below the recipe's own asymptote
    ci: tuple[float, float]
    level: float
    widened: bool = False  # the percentile interval missed the estimate and was stretched to reach it

    @property
    def reachable(self) -> bool:
        return math.isfinite(self.value)

    def to_dict(self) -> dict:
        def finite(v):
            return v if math.isfinite(v) else None  # JSON has no infinity

        return {
            "value": finite(self.value),
            "ci": [finite(self.ci[0]), finite(self.ci[1])],
            "level": self.level,
            "reachable": self.reachable,
            "widened": self.widened,
        }


def data_multiplier(
    data_fit: Fit, target: float, base_budget: float, target_samples: np.ndarray | None = None
) -> Multiplier:
    """D(target) / base_budget under the fitted L(D), inverting D = (A / (L - E))^(1/alpha).

    The interval pairs the data fit's bootstrap draws with the target's (when given), so it carries
    the uncertainty of both fits; draws where the target is unreachable count as infinite.
    """
    if base_budget <= 0:
        raise FitError(f"base_budget={base_budget} must be positive")
    value = data_fit.law.inverse(target) / base_budget
    n = len(data_fit.samples)
    targets = (
        np.full(n, target) if target_samples is None else np.resize(np.asarray(target_samples, float), n)
    )
    draws = np.array(
        [PowerLaw(*s).inverse(t) / base_budget for s, t in zip(data_fit.samples, targets, strict=False)]
    )
    lo, hi = _interval(draws, data_fit.level)
    value = float(value)
    widened = not (lo <= value <= hi)
    ci = (min(lo, value), max(hi, value))
    return Multiplier(value=value, ci=ci, level=data_fit.level, widened=widened)


# ----------------------------------------------------------------------------- fits bootstrapped from seeds


@dataclass
class SeedFit:
    """A law fitted to seed means, its bootstrap from the measured seed noise, and whether it is identified.

    Not identified: as many parameters as points (the law passes through them exactly, so nothing
    checks it), or a parameter at its bound (A = 0 or alpha = 0: flat; alpha at MAX_EXPONENT: the points
    do not follow a power law). Such a fit is reported with its reason and never used for a verdict.
    """

    law: PowerLaw
    x: list[float]
    y: list[float]
    ci: dict[str, tuple[float, float]]
    level: float
    samples: np.ndarray = field(repr=False)  # (n_boot, 3) draws of (A, alpha, E)
    identified: bool = True
    reason: str = ""
    inflation: float = 1.0  # lack-of-fit factor applied to the seed noise

    def to_dict(self) -> dict:
        return {
            "A": self.law.A,
            "alpha": self.law.alpha,
            "E": self.law.E,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "level": self.level,
            "n_points": len(self.x),
            "n_boot": int(len(self.samples)),
            "identified": self.identified,
            "reason": self.reason,
            "inflation": self.inflation,
            "x": self.x,
            "y": self.y,
        }


def identification(n_points: int, law: PowerLaw) -> str:
    """Why a fitted law is not identified ("" when it is)."""
    if n_points <= len(PARAMS):
        return (
            f"{n_points} points for {len(PARAMS)} parameters: the law passes through them exactly, "
            "so the data cannot check it (needs more points)"
        )
    if law.A == 0 or law.alpha == 0:
        return "flat: the loss does not fall with x here (A or the exponent at 0)"
    if law.alpha >= MAX_EXPONENT * (1 - 1e-6):
        return f"exponent at its bound ({MAX_EXPONENT:g}): the points do not follow a power law"
    if law.E <= 0:
        return "asymptote at its bound 0: the points fall too slowly to show where they level off"
    return ""


def fit_seed_draws(
    x: Sequence[float], y: Sequence[float], noise: np.ndarray, level: float = 0.95, what: str = "fit"
) -> SeedFit:
    """Fit L = A/x^alpha + E to y (seed means) and bootstrap it from noise draws (shape (B, n)).

    Each draw refits fitted + f * noise[b], where noise[b] is a draw of the points' seed-mean error
    (e.g. means of resampled seed deviations) and f >= 1 widens it when the points scatter about the law
    more than seed noise explains (lack of fit: the law is itself uncertain, not only the seeds).
    """
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    _check_points(x_arr, y_arr, what)
    noise = np.asarray(noise, dtype=float)
    if noise.ndim != 2 or noise.shape[1] != len(x_arr) or not np.all(np.isfinite(noise)):
        raise FitError(f"{what}: noise must be finite with shape (B, {len(x_arr)}), got {noise.shape}")
    x_ref = float(x_arr.min())
    xs = x_arr / x_ref
    w = np.ones_like(y_arr)
    p = _solve(xs, y_arr[None, :], w)[0]
    fitted = p[0] * xs ** -p[1] + p[2]
    f = _lack_of_fit(y_arr - fitted, noise.var(axis=0))
    q = _solve(xs, fitted + f * noise, w)
    samples = np.stack([q[:, 0] * x_ref ** q[:, 1], q[:, 1], q[:, 2]], axis=1)
    law = PowerLaw(*_unscale(p, x_ref))
    ci = {name: _interval(samples[:, i], level) for i, name in enumerate(PARAMS)}
    reason = identification(len(x_arr), law)
    return SeedFit(law, x_arr.tolist(), y_arr.tolist(), ci, level, samples, not reason, reason, f)


def _lack_of_fit(resid: np.ndarray, var: np.ndarray) -> float:
    """sqrt(chi^2 / dof) of the residuals against the seed variance, floored at 1 (1 without dof)."""
    dof = len(resid) - len(PARAMS)
    if dof <= 0:
        return 1.0
    chi2 = float(np.sum(resid**2 / np.maximum(var, 1e-18)))
    return max(1.0, math.sqrt(chi2 / dof))


def seed_mean_noise(counts: Sequence[int], pool: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(B, n) draws of each point's seed-mean error: the mean of counts[i] deviations resampled from the
    pooled seed deviations (already scaled to unit-variance estimates, see `seed_deviations`)."""
    pool = np.asarray(pool, dtype=float)
    if len(pool) < 2:
        raise FitError(f"seed noise needs at least 2 seed deviations, got {len(pool)}; run >= 2 seeds")
    cols = [rng.choice(pool, size=(n_boot, max(int(c), 1))).mean(axis=1) for c in counts]
    return np.stack(cols, axis=1) if cols else np.zeros((n_boot, 0))


def seed_deviations(groups: Sequence[Sequence[float]]) -> np.ndarray:
    """Deviations of each seed from its group's mean, scaled by sqrt(S/(S-1)) so that their variance
    estimates the seed-to-seed variance without the small-sample shrinkage; groups of one are skipped."""
    out = []
    for g in groups:
        g = np.asarray(g, dtype=float)
        if len(g) >= 2 and np.all(np.isfinite(g)):
            out.append((g - g.mean()) * math.sqrt(len(g) / (len(g) - 1)))
    return np.concatenate(out) if out else np.zeros(0)


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap draws (infinite draws stay infinite)."""
    return _interval(np.asarray(draws, dtype=float), level)
