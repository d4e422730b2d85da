"""Intervals for every reported figure: a hierarchical bootstrap over seeds, then test windows.

A figure such as "the soup's loss is 0.01 below the best single" varies for two reasons: which
stretches of text landed in the test split, and which random seed trained each model. A bootstrap
over test windows alone sees only the first, so a second seed can land outside its interval. Here
one bootstrap draw does what a rerun of the study would do:

1. for each arm, draw its independently trained seeds with replacement (with `paired_seeds`, the
   same seed indices for every arm, for arms that share seed i, e.g. soups of base i);
2. reweight the test windows by one multinomial draw shared by every arm, so a difference between
   arms is paired by window (all arms are scored on the same windows, in the same order);
3. record each arm's mean loss: the mean over drawn seeds of that seed's reweighted window mean.

Small-sample correction. With n seeds, a plain seed bootstrap undercovers: its spread uses the
divide-by-n variance, and a normal-width interval ignores that the variance itself is estimated
from n - 1 degrees of freedom (with 3 seeds the 95% t multiplier is 4.30, not 1.96). Before
resampling, each seed's deviation from the arm's grand mean is therefore stretched by
sqrt(n / (n - 1)) * t(n - 1) / z, where t and z are the two-sided 95% quantiles of Student's t and
the normal: the first factor makes the bootstrap variance unbiased, the second widens a normal
interval to the t interval. The stretch is a shift per seed, so windows keep their within-seed
pattern. It is calibrated for 95% intervals; other levels come out somewhat conservative.

Coverage to expect: about 95% for the mean (or a paired difference) with 3 to 10 seeds when the
seed effects are roughly normal; with one seed the interval covers only test-window noise, and
`resampled` says so.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

Arms = Mapping[str, Sequence[np.ndarray]]

# Two-sided 95% quantile of Student's t by degrees of freedom (1..30), then the normal's.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
_Z975 = 1.959964


def t975(df: int) -> float:
    """Student's t two-sided 95% quantile; past 30 degrees of freedom a two-term Cornish-Fisher expansion."""
    if df < 1:
        raise ValueError(f"t975: df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def seed_stretch(n_seeds: int) -> float:
    """Factor applied to seed deviations from the grand mean before resampling (see module docstring)."""
    if n_seeds < 2:
        return 1.0
    return math.sqrt(n_seeds / (n_seeds - 1)) * t975(n_seeds - 1) / _Z975


def _matrices(arms: Arms) -> dict[str, np.ndarray]:
    """Each arm as a (seeds, windows) float64 matrix, with the input checked and named in errors."""
    if not arms:
        raise ValueError("arms: no arms given")
    out, windows = {}, None
    for name, seeds in arms.items():
        if len(seeds) == 0:
            raise ValueError(f"arms[{name!r}]: no seeds")
        rows = [np.asarray(s, np.float64) for s in seeds]
        for i, row in enumerate(rows):
            if row.ndim != 1 or row.size == 0:
                raise ValueError(
                    f"arms[{name!r}][{i}]: expected a non-empty 1-D array of window losses, got shape {row.shape}"
                )
            if not np.all(np.isfinite(row)):
                raise ValueError(f"arms[{name!r}][{i}]: window losses must be finite")
            if windows is None:
                windows = row.size
            if row.size != windows:
                raise ValueError(
                    f"arms[{name!r}][{i}]: {row.size} windows, but other seeds or arms have {windows}; "
                    "every arm must be scored on the same test windows"
                )
        out[name] = np.stack(rows)
    return out


def _stretched(x: np.ndarray) -> np.ndarray:
    """Shift each seed's windows so its deviation from the grand mean grows by seed_stretch."""
    seed_means = x.mean(1, keepdims=True)
    return x + (seed_stretch(len(x)) - 1.0) * (seed_means - seed_means.mean())


def resample(
    arms: Arms, n_boot: int = 2000, seed: int = 0, paired_seeds: bool = False
) -> dict[str, np.ndarray]:
    """Per arm, its mean loss in each of `n_boot` hierarchical bootstrap draws (seeds, then windows).

    arms: name -> list over independently trained seeds of 1-D per-test-window losses; every arm is
    scored on the same windows in the same order. paired_seeds: draw the same seed indices for every
    arm (seed i of each arm belongs together); requires equal seed counts. One seed: windows only.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    mats = _matrices(arms)
    counts = {len(x) for x in mats.values()}
    if paired_seeds and len(counts) > 1:
        raise ValueError(
            f"arms: paired_seeds needs the same number of seeds in every arm, got {sorted(counts)}"
        )
    rng = np.random.default_rng(seed)
    n_windows = next(iter(mats.values())).shape[1]
    window_weights = rng.multinomial(n_windows, np.full(n_windows, 1.0 / n_windows), size=n_boot) / n_windows
    shared = {n: _seed_weights(rng, n, n_boot) for n in counts} if paired_seeds else {}
    out = {}
    for name, x in mats.items():
        seed_weights = shared.get(len(x)) if paired_seeds else _seed_weights(rng, len(x), n_boot)
        per_seed = window_weights @ _stretched(x).T  # (n_boot, seeds): each seed's reweighted window mean
        out[name] = (per_seed * seed_weights).sum(1)
    return out


def _seed_weights(rng: np.random.Generator, n_seeds: int, n_boot: int) -> np.ndarray:
    """(n_boot, n_seeds) share of each seed in a draw of n_seeds seeds with replacement."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) / n_seeds


def point(arms: Arms) -> dict[str, float]:
    """Each arm's estimate: the mean over seeds of the mean over windows."""
    return {name: float(x.mean(1).mean()) for name, x in _matrices(arms).items()}


def figure(estimate: float, draws: np.ndarray, null: float = 0.0, level: float = 0.95) -> dict:
    """{estimate, ci: [lo, hi] (percentile interval of the draws), p_direction}.

    p_direction is the share of draws on the same side of `null` as the estimate (ties count half):
    near 1 the draws agree with the estimate's direction; near 0.5 they cannot tell.
    """
    d = np.asarray(draws, np.float64).ravel()
    if d.size == 0:
        raise ValueError("draws: empty")
    if not 0 < level < 1:
        raise ValueError(f"level: must lie in (0, 1), got {level}")
    d = d[np.isfinite(d)]  # a ratio can be undefined in a draw whose denominator is zero
    if d.size == 0:
        raise ValueError("draws: no finite draws")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    side = 1.0 if estimate >= null else -1.0
    p = float(((side * (d - null)) > 0).mean() + 0.5 * (d == null).mean())
    return {"estimate": float(estimate), "ci": [float(lo), float(hi)], "p_direction": p}


def resampled(arms: Arms) -> str:
    """What the bootstrap resampled, in words a report can print."""
    mats = _matrices(arms)
    seeds = sorted({len(x) for x in mats.values()})
    windows = next(iter(mats.values())).shape[1]
    if seeds == [1]:
        return f"{windows} test windows of one model per arm (no seed noise)"
    count = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return f"{count} seeds per arm, then {windows} test windows"
