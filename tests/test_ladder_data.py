"""asymptote.ladder_data: each rung's data multiplier from the scaling study's own L(D), its interval,
and what the ladder says when the law cannot support one. Pure: no Ray or Prefect."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote import report_check
from asymptote.fits import PowerLaw
from asymptote.ladder import Ladder, Rung, render
from asymptote.ladder_data import with_data_multipliers
from asymptote.scaling_config import FitConfig, StudyData

LAW = PowerLaw(A=40.0, alpha=0.5, E=1.5)
BASE = 20_000
SEEDS = np.array([-0.004, 0.0, 0.004])  # each budget's seeds about its law value: seed noise, no bias
FITS = FitConfig(n_boot=400)


def study(budgets: list[int]) -> StudyData:
    return StudyData(
        sizes=[],
        base_budget=BASE,
        efficiency={b: (float(LAW(b)) + SEEDS).tolist() for b in budgets},
    )


def rung(name: str, loss: float) -> Rung:
    return Rung(
        name=name,
        kind="single",
        runs=[f"runs/{name}"],
        params=1,
        inference_flops=1,
        train_flops=1.0,
        val_loss=loss,
        test_loss=loss,
        test_bpb=None,
    )


def ladder(*losses: float) -> Ladder:
    rungs = [rung(f"m{i}", loss) for i, loss in enumerate(losses)]
    return Ladder(rungs=rungs, chosen="m0")


WINDOWS = {f"m{i}": [2.0, 2.02, 1.98, 2.01] for i in range(3)}


def test_the_multiplier_inverts_the_studys_law_and_its_interval_holds_it():
    at_base, better = float(LAW(BASE)), float(LAW(4 * BASE))  # a loss the law reaches with 4x the text
    out = with_data_multipliers(
        ladder(better, at_base), study([5_000, 10_000, BASE, 40_000, 80_000]), FITS, {}
    )
    assert out.data_law["identified"] and out.data_law["E"] == pytest.approx(LAW.E, abs=1e-3)
    four, one = (r.data_multiplier for r in out.rungs)
    assert four["value"] == pytest.approx(4.0, rel=0.01) and one["value"] == pytest.approx(1.0, rel=0.01)
    for m in (four, one):
        assert m["reachable"] and m["ci"][0] < m["value"] < m["ci"][1]
    assert report_check.check(out) == []


def test_a_loss_below_the_laws_asymptote_is_beyond_it():
    out = with_data_multipliers(ladder(LAW.E - 0.05), study([5_000, 10_000, BASE, 40_000]), FITS, {})
    m = out.rungs[0].data_multiplier
    assert m["reachable"] is False and m["value"] is None
    assert "beyond the standard law's E" in render(out)


def test_seed_and_window_noise_widen_the_interval():
    data = study([5_000, 10_000, BASE, 40_000])
    quiet = with_data_multipliers(ladder(float(LAW(2 * BASE))), data, FITS, {}).rungs[0].data_multiplier
    noisy = with_data_multipliers(ladder(float(LAW(2 * BASE))), data, FITS, WINDOWS).rungs[0].data_multiplier
    width = lambda m: m["ci"][1] - m["ci"][0]  # noqa: E731
    assert width(noisy) > width(quiet) > 0
    assert noisy["value"] == pytest.approx(quiet["value"])  # noise moves the interval, not the estimate


@pytest.mark.parametrize(
    ("budgets", "why"),
    [
        ([10_000, BASE], "L(D) needs >= 3"),
        (
            [10_000, BASE, 40_000],
            "3 points for 3 parameters",
        ),  # three points for three parameters: nothing checks the law
    ],
)
def test_the_ladder_says_why_there_is_no_multiplier(budgets, why):
    out = with_data_multipliers(ladder(2.0, 1.9), study(budgets), FITS, {})
    assert all(r.data_multiplier is None for r in out.rungs)
    assert why in out.data_law["reason"]
    text = render(out)
    assert "No data multiplier" in text and why in text
    assert "| n/a |" in text


def test_without_seed_replicas_there_is_no_interval_so_no_multiplier():
    data = StudyData(
        sizes=[], base_budget=BASE, efficiency={b: [float(LAW(b))] for b in (5_000, BASE, 40_000, 80_000)}
    )
    out = with_data_multipliers(ladder(2.0), data, FITS, {})
    assert out.rungs[0].data_multiplier is None and "seed" in out.data_law["reason"]


def test_the_rendered_ladder_agrees_with_itself():
    out = with_data_multipliers(
        ladder(float(LAW(3 * BASE)), float(LAW(BASE / 2))),
        study([5_000, 10_000, BASE, 40_000]),
        FITS,
        WINDOWS,
    )
    text = render(out)
    assert "data x standard" in text and "Data x standard" in text
    assert report_check.check_text(text) == []
