"""A soup's gain over the best single fine-tune, with the interval of asymptote.stats.

Pure numpy (no torch): the soups worker scores one base, and a study over several bases (bench/soups.py)
pools them. Gain = loss(best single) - loss(soup), so > 0 means the soup is better. Every model is scored
on the same windows of the reported split, so the two arms are paired by window; across bases, base i's
best single and base i's soup are paired by seed (paired_seeds), and bases are resampled like seeds.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from asymptote import stats


def verdict(gain: dict) -> str:
    """'better' / 'worse' only where the interval excludes zero on that side; otherwise 'no verdict'.

    Read from the interval itself, so a verdict can never disagree with the interval printed beside it.
    """
    lo, hi = gain["ci"]
    if lo > 0:
        return "better"
    return "worse" if hi < 0 else "no verdict"


def gain_over(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The gain of `candidate` over `reference`: {estimate, ci, p_direction, resampled, verdict}.

    reference, candidate: per base (seed), the per-window losses of the reference (the best single) and
    the candidate (a soup) of that base; one base gives an interval over windows only.
    """
    arms = {"reference": list(reference), "candidate": list(candidate)}
    draws = stats.resample(arms, n_boot=n_boot, seed=seed, paired_seeds=True)
    est = stats.point(arms)
    fig = stats.figure(est["reference"] - est["candidate"], draws["reference"] - draws["candidate"])
    return fig | {"resampled": stats.resampled(arms), "verdict": verdict(fig)}
