"""From a study's measured losses to its asymptotes, data-efficiency multipliers and checks. Pure.

Inputs are plain numbers (what the runs measured); outputs are fits with bootstrap intervals. Noise
for the bootstrap comes from the study itself: the seed-to-seed spread of the ensemble members
(members differ only in train_seed = data_seed), pooled over sizes, floored at `noise_floor`.
A fit that the data cannot support (too few sizes, members or budgets) is reported with its reason
instead of failing the study: nothing already trained is lost.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from asymptote.fits import Fit, FitError, Multiplier, data_multiplier, fit_power_law
from asymptote.scaling import monotone_decreasing, overfits
from asymptote.scaling_config import FitConfig


class SizeData(BaseModel):
    """What one model size measured."""

    label: str
    params: int
    standard: float
    """Best (certified) loss of the standard recipe at the base budget."""
    regularized: float
    """Best (certified) loss of the regularized recipe at the base budget."""
    members: list[float] = Field(default_factory=list)
    """Each ensemble member's own loss."""
    ensemble: dict[str, list[float]] = Field(default_factory=dict)
    """Loss of the first-k ensemble, k = 1..K, per combination (logits, probs)."""


class StudyData(BaseModel):
    sizes: list[SizeData]
    base_budget: int
    sweep: dict[str, dict[float, float]] = Field(default_factory=dict)
    """Loss against epochs at one size, per recipe (standard = WD fixed, regularized = tuned WD)."""
    efficiency: dict[int, float] = Field(default_factory=dict)
    """The standard recipe's best loss at each token budget (the base budget included)."""


class FitOutcome(BaseModel):
    """A fit's parameters and intervals, or why it could not be made."""

    ok: bool
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""

    @property
    def asymptote(self) -> float | None:
        return self.params.get("E") if self.ok else None

    def ci(self, name: str = "E") -> list[float] | None:
        return self.params["ci"][name] if self.ok else None


class Analysis(BaseModel):
    fits: dict[str, FitOutcome]
    """standard_N, regularized_N, ensemble_K/<label>, joint_N, standard_D."""
    multipliers: dict[str, dict[str, Any]]
    """regularized / joint: how many times the base budget the standard recipe needs to reach it."""
    checks: dict[str, bool | None]
    """wd_overfit_fixed, ensemble_monotone_in_k, joint_below_regularized (None: not measurable)."""
    seed_noise: float | None
    """Pooled seed-to-seed standard deviation of member losses (nats), if K >= 2."""


def seed_noise(sizes: list[SizeData]) -> float | None:
    """sqrt of the mean per-size variance of member losses; None without two members anywhere."""
    variances = [float(np.var(s.members, ddof=1)) for s in sizes if len(s.members) >= 2]
    return math.sqrt(float(np.mean(variances))) if variances else None


def _try_fit(fits: dict, name: str, x, y, sigma, cfg: FitConfig) -> Fit | None:
    try:
        fit = fit_power_law(x, y, sigma=sigma, n_boot=cfg.n_boot, level=cfg.level, seed=cfg.seed, what=name)
    except FitError as err:
        fits[name] = FitOutcome(ok=False, reason=str(err))
        return None
    fits[name] = FitOutcome(ok=True, params=fit.to_dict())
    return fit


def analyse(data: StudyData, cfg: FitConfig) -> Analysis:
    """Fit L(N) per recipe, L(K) per size, the joint C_N(N), the standard L(D); invert; judge the checks."""
    fits: dict[str, FitOutcome] = {}
    noise = seed_noise(data.sizes)
    point_sigma = max(noise or 0.0, cfg.noise_floor)
    n = [s.params for s in data.sizes]
    _try_fit(fits, "standard_N", n, [s.standard for s in data.sizes], point_sigma, cfg)
    reg = _try_fit(fits, "regularized_N", n, [s.regularized for s in data.sizes], point_sigma, cfg)
    joint = _joint(fits, data.sizes, point_sigma, cfg)
    budgets = sorted(data.efficiency)
    data_fit = _try_fit(fits, "standard_D", budgets, [data.efficiency[b] for b in budgets], point_sigma, cfg)
    multipliers = {
        name: _multiplier(data_fit, target, data.base_budget, cfg)
        for name, target in (("regularized", reg), ("joint", joint))
    }
    return Analysis(
        fits=fits, multipliers=multipliers, checks=_checks(data, reg, joint, cfg), seed_noise=noise
    )


def _joint(fits: dict, sizes: list[SizeData], sigma: float, cfg: FitConfig) -> Fit | None:
    """L(K) = A/K^beta + C at each size, then C_N = A/N^alpha + E: the (N, K -> inf) asymptote."""
    xs, cs, c_sigma = [], [], []
    for s in sizes:
        curve = s.ensemble.get(cfg.combine, [])
        k = np.arange(1, len(curve) + 1)
        fit = _try_fit(fits, f"ensemble_K/{s.label}", k, curve, sigma / np.sqrt(k) if len(k) else sigma, cfg)
        if fit is not None:
            xs.append(s.params)
            cs.append(fit.law.E)
            c_sigma.append(max(float(np.std(fit.samples[:, 2])), cfg.noise_floor))
    return _try_fit(fits, "joint_N", xs, cs, c_sigma, cfg)


def _multiplier(data_fit: Fit | None, target: Fit | None, base: int, cfg: FitConfig) -> dict[str, Any]:
    if data_fit is None or target is None:
        missing = "standard_D" if data_fit is None else "the target's N fit"
        return {
            "value": None,
            "ci": [None, None],
            "level": cfg.level,
            "reachable": None,
            "reason": f"needs {missing}",
        }
    m: Multiplier = data_multiplier(data_fit, target.law.E, base, target_samples=target.samples[:, 2])
    return m.to_dict() | {"target_loss": target.law.E}


def _checks(data: StudyData, reg: Fit | None, joint: Fit | None, cfg: FitConfig) -> dict[str, bool | None]:
    sweep_ok = all(len(data.sweep.get(r, {})) >= 2 for r in ("standard", "regularized"))
    wd = (
        overfits(data.sweep["standard"], cfg.overfit_tol)
        and not overfits(data.sweep["regularized"], cfg.overfit_tol)
        if sweep_ok
        else None
    )
    curves = [s.ensemble.get(cfg.combine, []) for s in data.sizes]
    mono = (
        all(monotone_decreasing(c) for c in curves) if curves and all(len(c) >= 2 for c in curves) else None
    )
    below = bool(joint.law.E < reg.law.E) if joint is not None and reg is not None else None
    return {"wd_overfit_fixed": wd, "ensemble_monotone_in_k": mono, "joint_below_regularized": below}
