"""From a study's measured test losses to its fits, data-efficiency multipliers and verdicts. Pure.

Inputs are plain numbers: every loss here is on the TEST split (nothing was chosen on it; the search
read validation only), per seed for each certified optimum and per member for each ensemble.
Uncertainty comes from the data: the seed-to-seed deviations of the replicas (pooled over points) are
resampled to draw each point's error, every fit is refitted on every draw, and a verdict's
p_direction is the fraction of draws that go the paper's way (not a p-value: 1.0 is the strongest
support). A fit that is not identified (as many parameters as points, a parameter at its bound), or a
choice at the edge of its search grid, keeps its reason and gives no verdict: `supported` needs an
identified estimate and p_direction >= `FitConfig.supported_p`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from asymptote.fits import (
    MAX_EXPONENT,
    FitError,
    PowerLaw,
    SeedFit,
    data_multiplier,
    fit_seed_draws,
    interval,
    seed_deviations,
    seed_mean_noise,
)
from asymptote.member_bootstrap import (
    MIN_BOOTSTRAP_MEMBERS,
    curve_draws,
    falls_probability,
    u_curve,
    window_weights,
)
from asymptote.scaling_config import Analysis, Claim, FitConfig, FitOutcome, SizeData, StudyData

# ----------------------------------------------------------------------------- noise


class Noise:
    """The study's seed noise: pooled deviations of every replicated point, and the bootstrap's rng."""

    def __init__(self, data: StudyData, cfg: FitConfig):
        groups = [g for s in data.sizes for g in (s.standard, s.regularized, s.members)]
        self.pool = seed_deviations(groups + list(data.efficiency.values()))
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.interaction = np.concatenate([_interactions(s) for s in data.sizes] or [np.zeros(0)])
        self._windows: dict[tuple[int, ...], np.ndarray] = {}
        self.raw: dict[str, np.ndarray] = {}
        self.intervals: dict[str, list[list[float]]] = {}

    @property
    def sd(self) -> float | None:
        return float(np.sqrt(np.mean(self.pool**2))) if len(self.pool) >= 2 else None

    def means(self, counts: list[int]) -> np.ndarray:
        """(B, n) draws of seed-mean errors."""
        return seed_mean_noise(counts, self.pool, self.cfg.n_boot, self.rng)

    def curve(self, size: SizeData) -> tuple[list[float], np.ndarray, str]:
        """(curve, (B, K) draws of it, how) of a size's ensemble loss against k.

        With the loss of every multiset of members (how = "members"): the mean over k-subsets (a
        U-statistic), drawn by redrawing the K members with replacement and, with per-block losses, the
        test blocks; the block weights of one draw are the same at every size (one test text). The
        redrawn U-statistics average to the V-statistic (every k-tuple of members, repeats included),
        not to the measured curve: a redraw that repeats a member is a less diverse ensemble. So the
        draws are the measured curve plus each redraw's deviation from the redraws' mean (the bootstrap
        pivot); the uncentred redraws are kept in `raw`. Otherwise (how = "assumed") the older noise
        model: the curve plus `assumed_errors`."""
        if size.multisets:
            k = len(size.members)
            curve = u_curve(size.multisets, k, size.windows or None)
            raw = curve_draws(size.multisets, k, self.cfg.n_boot, self.rng, self.windows(size.windows))
            self.raw[size.label] = raw
            return curve.tolist(), curve + (raw - raw.mean(axis=0)), "members"
        curve, err = self.assumed_errors(size)
        return curve, np.asarray(curve)[None, :] + err, "assumed"

    def windows(self, blocks: list[int]) -> np.ndarray | None:
        """(B, W) block weights, drawn once per distinct block layout so every size shares them."""
        if not blocks:
            return None
        key = tuple(blocks)
        if key not in self._windows:
            self._windows[key] = window_weights(blocks, self.cfg.n_boot, self.rng)
        return self._windows[key]

    def assumed_errors(self, size: SizeData) -> tuple[list[float], np.ndarray]:
        """(curve, (B, K) error draws) without multiset losses.

        With every subset evaluated: the mean over k-subsets, whose error is the members' common luck
        (the mean of K resampled member deviations, the same at every k) plus an interaction term drawn
        from how single subsets stray from that additive picture (pooled over sizes; not divided by the
        number of subsets, so conservative). Otherwise the first-k curve with `cumulative` errors."""
        curve = size.subset_curve()
        if not curve or len(self.interaction) < 2:
            first = size.ensemble.get(self.cfg.combine, [])
            return first, self.cumulative(size.members, len(first))
        members = seed_deviations([size.members])
        pool = members if len(members) >= 2 else self.pool
        common = self.rng.choice(pool, size=(self.cfg.n_boot, len(size.members))).mean(axis=1)
        inner = self.rng.choice(self.interaction, size=(self.cfg.n_boot, len(curve)))
        inner[:, 0] = 0.0  # the mean of single members has no interaction term
        return curve, common[:, None] + inner

    def cumulative(self, members: list[float], k: int) -> np.ndarray:
        """(B, k) draws of first-k ensemble errors: running means of resampled member deviations (this
        size's members when it has two, else the pool)."""
        own = seed_deviations([members])
        pool = own if len(own) >= 2 else self.pool
        if len(pool) < 2:
            raise FitError("ensemble noise needs >= 2 members or seed replicas")
        draws = self.rng.choice(pool, size=(self.cfg.n_boot, k))
        return np.cumsum(draws, axis=1) / np.arange(1, k + 1)


def _interactions(size: SizeData) -> np.ndarray:
    """Residuals of subsets of 1 < k < K members from the additive picture
    L(S) = Lbar(k) + mean_{i in S} u_i - mean u, with u_i = L({i}) - Lbar(1)."""
    if not size.subsets:
        return np.zeros(0)
    single = {int(k): v for k, v in size.subsets.items() if "," not in k}
    curve = size.subset_curve()
    u = {i: v - curve[0] for i, v in single.items()}
    u_bar = float(np.mean(list(u.values())))
    out = []
    for key, loss in size.subsets.items():
        idx = [int(i) for i in key.split(",")]
        if 1 < len(idx) < len(curve):
            out.append(loss - curve[len(idx) - 1] - (np.mean([u[i] for i in idx]) - u_bar))
    return np.asarray(out, dtype=float)


# ----------------------------------------------------------------------------- fits


def _record(fits: dict, name: str, make) -> SeedFit | None:
    try:
        fit = make()
    except FitError as err:
        fits[name] = FitOutcome(ok=False, reason=str(err))
        return None
    fits[name] = FitOutcome(ok=True, params=fit.to_dict())
    return fit


def _mean(v: list[float]) -> float:
    return float(np.mean(v))


def _fit_sizes(fits: dict, noise: Noise, data: StudyData, recipe: str) -> SeedFit | None:
    groups = [getattr(s, recipe) for s in data.sizes]
    n = [s.params for s in data.sizes]
    y = [_mean(g) for g in groups]
    return _record(
        fits, f"{recipe}_N", lambda: fit_seed_draws(n, y, noise.means([len(g) for g in groups]), what=recipe)
    )


def _joint(fits: dict, noise: Noise, data: StudyData, per_size: dict[str, SeedFit]) -> SeedFit | None:
    """L(K) = A/K^beta + C at each size, then C_N = A/N^alpha + E: the (N, K -> inf) asymptote.

    Draw b of every size's curve comes from the same bootstrap draw (members redrawn at each size, the
    test blocks reweighted alike at all sizes), so each joint refit sees one coherent resampled study."""
    xs, cs, draws = [], [], []
    for s in data.sizes:
        name = f"ensemble_K/{s.label}"

        def make(s=s, n=name):
            curve, d, _ = noise.curve(s)
            return fit_seed_draws(np.arange(1, len(curve) + 1), curve, d - np.asarray(curve), what=n)

        fit = _record(fits, name, make)
        if fit is not None and fit.identified:
            per_size[s.label] = fit
            xs.append(s.params)
            cs.append(fit.law.E)
            draws.append(fit.samples[:, 2] - fit.law.E)
    if not draws:
        fits["joint_N"] = FitOutcome(
            ok=False, reason="no size has an identified L(K) fit (needs K >= 4 members)"
        )
        return None
    return _record(fits, "joint_N", lambda: fit_seed_draws(xs, cs, np.stack(draws, axis=1), what="joint_N"))


def standard_data_fit(data: StudyData, noise: Noise) -> SeedFit:
    """The standard recipe's L(D) over the study's token budgets: seed means, bootstrapped from the
    pooled seed noise (raises FitError when it cannot be fitted)."""
    budgets = sorted(data.efficiency)
    groups = [data.efficiency[b] for b in budgets]
    y = [_mean(g) for g in groups]
    return fit_seed_draws(budgets, y, noise.means([len(g) for g in groups]), what="standard_D")


def _fit_data(fits: dict, noise: Noise, data: StudyData) -> SeedFit | None:
    return _record(fits, "standard_D", lambda: standard_data_fit(data, noise))


def analyse(data: StudyData, cfg: FitConfig) -> Analysis:
    """Fit L(N) per recipe, L(K) per size, the joint C_N(N), the standard L(D); invert; judge the claims."""
    noise = Noise(data, cfg)
    fits: dict[str, FitOutcome] = {}
    per_size: dict[str, SeedFit] = {}  # identified L(K) fits, by size
    if noise.sd is None:
        reason = "no seed replicas: uncertainty cannot be measured (run >= 2 seeds)"
        fits = {
            k: FitOutcome(ok=False, reason=reason)
            for k in ("standard_N", "regularized_N", "joint_N", "standard_D")
        }
        std = reg = joint = data_fit = None
    else:
        std = _fit_sizes(fits, noise, data, "standard")
        reg = _fit_sizes(fits, noise, data, "regularized")
        joint = _joint(fits, noise, data, per_size)
        data_fit = _fit_data(fits, noise, data)
    multipliers = {
        name: _multiplier(data_fit, target, data.base_budget, cfg)
        for name, target in (("regularized", reg), ("joint", joint))
    }
    claims = judge(data, noise, cfg, std, reg, joint, data_fit)
    claims["joint_below_regularized_measured"] = _per_size_joint(data, noise, cfg, per_size)
    checks = {
        "wd_overfit_fixed": claims["more_epochs_help_with_tuned_wd"].supported,
        "ensemble_monotone_in_k": claims["ensemble_loss_falls_in_k"].supported,
        "joint_below_regularized": claims["joint_below_regularized"].supported,
    }
    return Analysis(
        fits=fits,
        multipliers=multipliers,
        claims=claims,
        checks=checks,
        seed_noise=noise.sd,
        split=data.split,
        ensemble_ci=noise.intervals,
    )


def _multiplier(
    data_fit: SeedFit | None, target: SeedFit | None, base: int, cfg: FitConfig
) -> dict[str, Any]:
    if data_fit is None or target is None:
        missing = "standard_D" if data_fit is None else "the target's N fit"
        return {
            "value": None,
            "ci": [None, None],
            "level": cfg.level,
            "reachable": None,
            "reason": f"needs {missing}",
        }
    m = data_multiplier(data_fit, target.law.E, base, target_samples=target.samples[:, 2])
    identified = data_fit.identified and target.identified
    reason = "" if identified else "not identified: " + (data_fit.reason or target.reason)
    return m.to_dict() | {"target_loss": float(target.law.E), "identified": identified, "reason": reason}


# ----------------------------------------------------------------------------- verdicts


def claim(
    estimate: float | None, draws: np.ndarray | None, cfg: FitConfig, direction: str, why_not: str = ""
) -> Claim:
    """A verdict from draws of a statistic whose paper direction is > 0; why_not: not identified."""
    if estimate is None or draws is None:
        return Claim(
            estimate=None,
            ci=[None, None],
            p_direction=None,
            supported=False,
            identified=False,
            direction=direction,
            note=why_not,
        )
    p = float(np.mean(np.asarray(draws) > 0))
    ci = [_finite(v) for v in interval(draws, cfg.level)]
    identified = not why_not
    return Claim(
        estimate=_finite(estimate),
        ci=ci,
        p_direction=p,
        supported=identified and p >= cfg.supported_p,
        identified=identified,
        direction=direction,
        note=why_not,
    )


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None  # JSON has no infinity: None reads "unbounded"


def _why_not(*fits: SeedFit | None) -> str:
    missing = [f for f in fits if f is None]
    if missing:
        return "a fit it needs could not be made (see the fits table)"
    return "; ".join(dict.fromkeys(f"{f.reason}" for f in fits if not f.identified))


def _gap(a: SeedFit | None, b: SeedFit | None, cfg: FitConfig, direction: str) -> Claim:
    """E_a - E_b > 0, paired draw by draw (the draws of different fits are independent)."""
    if a is None or b is None:
        return claim(None, None, cfg, direction, _why_not(a, b))
    c = claim(a.law.E - b.law.E, a.samples[:, 2] - b.samples[:, 2], cfg, direction, _why_not(a, b))
    return c.model_copy(update={"note": c.note or _at_bounds(a, b)})


def _at_bounds(*fits: SeedFit) -> str:
    """How often the bootstrap refits sit at a bound (asymptote 0, exponent 0 or at its cap): a wide
    interval's cause, said plainly (the point fit alone can look identified)."""
    shares = [
        float(
            np.mean(
                (f.samples[:, 2] <= 0)
                | (f.samples[:, 1] <= 0)
                | (f.samples[:, 1] >= MAX_EXPONENT * (1 - 1e-6))
            )
        )
        for f in fits
    ]
    if max(shares) < 0.05:
        return ""
    return "weakly identified: bootstrap refits at a bound (asymptote 0 or exponent 0/cap): " + ", ".join(
        f"{s:.0%}" for s in shares
    )


def _multiplier_claim(data_fit, target, base: int, cfg: FitConfig, direction: str) -> Claim:
    """D needed by the standard recipe to reach the target, over the base budget, minus 1 > 0."""
    if data_fit is None or target is None:
        return claim(None, None, cfg, direction, _why_not(data_fit, target))
    draws = np.array(
        [PowerLaw(*s).inverse(t) / base for s, t in zip(data_fit.samples, target.samples[:, 2], strict=False)]
    )
    value = data_fit.law.inverse(target.law.E) / base
    c = claim(value, draws - 1.0, cfg, direction, _why_not(data_fit, target))
    note = c.note or (
        "" if math.isfinite(value) else "unreachable: the target lies below L(D)'s own asymptote"
    )
    return c.model_copy(update={"ci": [_finite(v) for v in interval(draws, cfg.level)], "note": note})


def _per_size_gap(data: StudyData, noise: Noise, cfg: FitConfig) -> Claim:
    """Measured, no extrapolation: mean over sizes of (standard - regularized) test loss."""
    std = np.array([_mean(s.standard) for s in data.sizes])
    reg = np.array([_mean(s.regularized) for s in data.sizes])
    if noise.sd is None:
        return claim(None, None, cfg, "standard - regularized > 0", "no seed replicas")
    d_std = noise.means([len(s.standard) for s in data.sizes])
    d_reg = noise.means([len(s.regularized) for s in data.sizes])
    draws = ((std + d_std) - (reg + d_reg)).mean(axis=1)
    return claim(float((std - reg).mean()), draws, cfg, "standard - regularized > 0 (mean over sizes)")


def _ensembles(data: StudyData, noise: Noise, cfg: FitConfig) -> Claim:
    """L(1) - L(K) averaged over sizes; p_direction: the smallest, over sizes and steps k -> k+1, fraction of
    draws in which the loss falls (the claim holds only if every step falls, so each must be supported
    on its own: an intersection-union test, whose level is that of each step's test)."""
    direction = "L(k) falls at every k at every size"
    if noise.sd is None or not data.sizes:
        return claim(None, None, cfg, direction, "needs K >= 2 members at every size and seed replicas")
    small = [s.label for s in data.sizes if s.multisets and len(s.members) < MIN_BOOTSTRAP_MEMBERS]
    if small:
        return claim(
            None,
            None,
            cfg,
            direction,
            f"needs K >= {MIN_BOOTSTRAP_MEMBERS} members for a member bootstrap (at {', '.join(small)}: "
            f"K = {len(data.sizes[0].members)}, too few redraws to measure member variation)",
        )
    curves = [noise.curve(s) for s in data.sizes]
    if any(len(c) < 2 for c, _, _ in curves):
        return claim(None, None, cfg, direction, "needs K >= 2 members at every size")
    noise.intervals = {
        s.label: [list(interval(d[:, k], cfg.level)) for k in range(d.shape[1])]
        for s, (_, d, _) in zip(data.sizes, curves, strict=True)
    }
    steps, together, gaps = [], [], []
    for _, d, _ in curves:
        per_step, all_steps = falls_probability(d)
        steps.append(per_step)
        together.append(np.all(np.diff(d, axis=1) < 0, axis=1))
        gaps.append(d[:, 0] - d[:, -1])
    p = float(np.min(np.concatenate(steps)))
    hows = sorted({how for _, _, how in curves})
    note = (
        f"bootstrap: {', '.join(hows)}; per-size min p_direction: "
        + ", ".join(f"{s.label} {float(np.min(st)):.3f}" for s, st in zip(data.sizes, steps, strict=True))
        + f"; every step at every size in one draw: {float(np.mean(np.all(together, axis=0))):.3f}"
    )
    if noise.raw:  # the uncentred redraws (biased towards flat curves): a more conservative reading
        raw = min(float(np.min(falls_probability(d)[0])) for d in noise.raw.values())
        note += f"; uncentred redraws: min p_direction {raw:.3f}"
    estimate = float(np.mean([c[0] - c[-1] for c, _, _ in curves]))
    ci = [_finite(v) for v in interval(np.mean(gaps, axis=0), cfg.level)]
    return Claim(
        estimate=estimate,
        ci=ci,
        p_direction=p,
        supported=p >= cfg.supported_p,
        identified=True,
        direction=direction,
        note=note,
    )


def _per_size_joint(data: StudyData, noise: Noise, cfg: FitConfig, per_size: dict[str, SeedFit]) -> Claim:
    """No extrapolation in N: mean over sizes of (regularized single - that size's K -> inf asymptote C),
    each C from its L(K) fit on the member bootstrap, each single from the seed noise."""
    direction = "regularized - C(K -> inf) > 0 (mean over the measured sizes)"
    if noise.sd is None or not data.sizes or len(per_size) < len(data.sizes):
        missing = [s.label for s in data.sizes if s.label not in per_size]
        return claim(
            None, None, cfg, direction, f"no identified L(K) fit at {', '.join(missing) or 'any size'}"
        )
    reg = np.array([_mean(s.regularized) for s in data.sizes])
    c = np.array([per_size[s.label].law.E for s in data.sizes])
    d_reg = noise.means([len(s.regularized) for s in data.sizes])
    d_c = np.stack([per_size[s.label].samples[:, 2] for s in data.sizes], axis=1)
    return claim(float((reg - c).mean()), ((reg + d_reg) - d_c).mean(axis=1), cfg, direction)


def _tuned_wd(data: StudyData, cfg: FitConfig, rng) -> Claim:
    """Geometric mean over sizes of the chosen weight decay; p_direction: size-bootstrap draws >= wd_factor
    x standard. A choice at either end of its grid is not identified: the search says only that the
    optimum lies there or beyond, so no interval of chosen values measures it."""
    wd = np.array([s.regularized_wd for s in data.sizes], dtype=float)
    threshold = cfg.wd_factor * data.standard_wd
    direction = f"tuned WD >= {cfg.wd_factor:g} x {data.standard_wd:g}"
    if len(wd) < 2 or np.any(wd <= 0):
        return claim(None, None, cfg, direction, "needs >= 2 sizes with a positive tuned weight decay")
    edge = grid_edge(data)
    if edge:
        return claim(None, None, cfg, direction, edge)
    idx = rng.integers(0, len(wd), size=(cfg.n_boot, len(wd)))
    geo = np.exp(np.log(wd)[idx].mean(axis=1))
    c = claim(float(np.exp(np.log(wd).mean())), geo - threshold, cfg, direction)
    note = "the interval resamples sizes (each choice is one grid point, with no seed noise of its own)"
    return c.model_copy(update={"ci": [_finite(v) for v in interval(geo, cfg.level)], "note": note})


def grid_edge(data: StudyData) -> str:
    """Why the tuned weight decays cannot judge a claim ("" when every choice is interior to its grid)."""
    grid = sorted(data.wd_grid)
    if not grid:
        return "grid not recorded: not identified: whether each choice sits at its grid's edge is unknown"
    if len(grid) < 3:
        return (
            f"at grid edge: not identified: the weight-decay grid {grid} has fewer than 3 values, so every "
            "choice sits at an edge and the optimum may lie beyond it (widen search.grid.weight_decay)"
        )
    ends = {grid[0]: "bottom", grid[-1]: "top"}
    at = [
        f"{s.label} chose {s.regularized_wd:g}, the {ends[s.regularized_wd]}"
        for s in data.sizes
        if s.regularized_wd in ends
    ]
    if not at:
        return ""
    return (
        f"at grid edge: not identified: {'; '.join(at)} of its grid {grid}; the optimum may lie beyond "
        "it (widen search.grid.weight_decay in that direction)"
    )


def _overfit(curve: np.ndarray) -> np.ndarray:
    return curve[..., -1] - curve.min(axis=-1)


def _epochs(data: StudyData, noise: Noise, cfg: FitConfig) -> Claim:
    """How much more the WD-0.1 curve overfits at its most epochs than the tuned-WD curve (both on
    test; each point is one run, so each draw adds a resampled seed deviation to every point)."""
    direction = "overfit(WD fixed) - overfit(WD tuned) > 0"
    curves = [data.sweep.get(r, {}) for r in ("standard", "regularized")]
    if any(len(c) < 2 for c in curves) or noise.sd is None:
        return claim(
            None, None, cfg, direction, "needs an epoch sweep of >= 2 points per recipe and seed replicas"
        )
    ys = [np.array([c[e] for e in sorted(c)]) for c in curves]
    draws = [y + noise.means([1] * len(y)) for y in ys]
    estimate = float(_overfit(ys[0]) - _overfit(ys[1]))
    c = claim(estimate, _overfit(draws[0]) - _overfit(draws[1]), cfg, direction)
    return c.model_copy(
        update={"note": f"WD-fixed curve overfits by {float(_overfit(ys[0])):.4f} nats at its most epochs"}
    )


def judge(data: StudyData, noise: Noise, cfg: FitConfig, std, reg, joint, data_fit) -> dict[str, Claim]:
    """Every claim of the paper that this study can test, each with estimate, interval and p_direction."""
    base = data.base_budget
    return {
        "regularized_below_standard": _gap(std, reg, cfg, "E_standard - E_regularized > 0"),
        "regularized_below_standard_measured": _per_size_gap(data, noise, cfg),
        "tuned_wd_well_above_standard": _tuned_wd(data, cfg, noise.rng),
        "more_epochs_help_with_tuned_wd": _epochs(data, noise, cfg),
        "ensemble_loss_falls_in_k": _ensembles(data, noise, cfg),
        "joint_below_regularized": _gap(reg, joint, cfg, "E_regularized - E_joint > 0"),
        "multiplier_regularized_above_1": _multiplier_claim(data_fit, reg, base, cfg, "multiplier - 1 > 0"),
        "multiplier_joint_above_1": _multiplier_claim(data_fit, joint, base, cfg, "multiplier - 1 > 0"),
    }


# ----------------------------------------------------------------------------- headline figures


def figures(data: StudyData, analysis: Analysis) -> dict[str, Any]:
    """The headline numbers (all on the test split): asymptotes with intervals, loss per K, multipliers,
    every claim's verdict and the checks (true only when supported)."""
    fit = analysis.fits
    out: dict[str, Any] = {"split": data.split}
    for name, key in (("standard", "standard_N"), ("regularized", "regularized_N"), ("joint", "joint_N")):
        f = fit.get(key)
        out[f"{name}_asymptote"] = f.asymptote if f and f.identified else None
        out[f"{name}_asymptote_ci"] = f.ci() if f and f.identified else None
        out[f"{name}_identified"] = bool(f and f.identified)
    out["sizes"] = [s.params for s in data.sizes]
    out["seed_noise"] = analysis.seed_noise
    out["loss_per_k"] = {s.label: s.ensemble.get("logits", []) for s in data.sizes}
    out["loss_per_k_mean_over_subsets"] = {s.label: s.subset_curve() for s in data.sizes}
    out["loss_per_k_probs"] = {s.label: s.ensemble.get("probs", []) for s in data.sizes}
    out["data_efficiency"] = {
        name: {k: m.get(k) for k in ("value", "ci", "reachable", "identified")}
        | ({} if m.get("identified") else {"value": None, "ci": [None, None], "reason": m.get("reason")})
        for name, m in analysis.multipliers.items()
    }
    out["claims"] = {k: _claim_figures(c) for k, c in analysis.claims.items()}
    return out | analysis.checks


def _claim_figures(c: Claim) -> dict[str, Any]:
    """A claim's numbers; none from a fit that is not identified (they would read as results)."""
    out = c.model_dump(include={"estimate", "ci", "p_direction", "supported", "identified", "note"})
    if not c.identified:
        out |= {"estimate": None, "ci": [None, None], "p_direction": None}
    return out
