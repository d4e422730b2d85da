"""How much text each rung of the recipe's ladder is worth: its data multiplier.

The paper's definition: the data the standard recipe would need to reach a model's loss, divided by
the data the model was trained on. The standard recipe's data law L(D) = E + A D^-alpha is the scaling
study's own (`standard_D`: its best standard model at each token budget, seed means on test), so the
multiplier needs no run beyond the study. A rung's loss at or below the law's asymptote E has no
finite multiplier (the standard recipe cannot reach it at any amount of text).

The interval pairs each bootstrap draw of the law (refitted from resampled seed deviations, as the
study fits it) with a draw of the rung's test loss: one trained model's seed noise (resampled from the
study's pooled seed deviations; an ensemble's or a student's is taken as a single model's, which
overstates it) plus its test windows resampled. Pure: no Prefect or Ray.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from asymptote.fits import FitError, data_multiplier
from asymptote.ladder import Ladder, window_means
from asymptote.scaling_analysis import Noise, standard_data_fit
from asymptote.scaling_config import FitConfig, StudyData


def data_law(study: StudyData, noise: Noise) -> tuple[Any, dict[str, Any]]:
    """(the standard recipe's seed-bootstrapped L(D) fit or None, what to report of it). The fit is
    usable only when identified; `reason` says why not."""
    budgets = sorted(study.efficiency)
    info: dict[str, Any] = {
        "budgets": budgets,
        "losses": [float(np.mean(study.efficiency[b])) for b in budgets],
        "base_budget": study.base_budget,
        "identified": False,
        "reason": "",
    }
    if len(budgets) < 3:
        info["reason"] = (
            f"{len(budgets)} token budget(s) measured; L(D) needs >= 3 (scaling.efficiency.budgets)"
        )
        return None, info
    if noise.sd is None:
        info["reason"] = "no seed replicas: the law's uncertainty cannot be measured (run >= 2 seeds)"
        return None, info
    try:
        fit = standard_data_fit(study, noise)
    except FitError as e:
        info["reason"] = f"L(D) fit failed: {e}"
        return None, info
    law = fit.law
    info |= {"A": law.A, "alpha": law.alpha, "E": law.E, "identified": fit.identified, "reason": fit.reason}
    return (fit if fit.identified else None), info


def loss_draws(loss: float, windows: Sequence[float], noise: Noise, n_boot: int) -> np.ndarray:
    """(B,) draws of a model's test loss: one model's seed noise plus its resampled test windows' spread."""
    seed = noise.means([1])[:, 0]
    if len(windows):
        seed = seed + (window_means(windows, n_boot, noise.rng) - np.mean(windows))
    return loss + seed


def with_data_multipliers(
    ladder: Ladder, study: StudyData, fits: FitConfig, windows: Mapping[str, Sequence[float]]
) -> Ladder:
    """The ladder with the standard law's summary (`data_law`) and every rung's `data_multiplier`
    ({value, ci, level, reachable} or None with `data_law.reason` saying why)."""
    noise = Noise(study, fits)
    fit, info = data_law(study, noise)
    rungs = []
    for r in ladder.rungs:
        m = None
        if fit is not None:
            draws = loss_draws(r.test_loss, windows.get(r.name, ()), noise, fits.n_boot)
            m = data_multiplier(fit, r.test_loss, study.base_budget, target_samples=draws).to_dict()
        rungs.append(r.model_copy(update={"data_multiplier": m}))
    return ladder.model_copy(update={"rungs": rungs, "data_law": info})
