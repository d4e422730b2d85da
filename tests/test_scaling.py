"""The pure recipe logic: grid neighbours, the certification rule, coordinate descent, the member
recipe, run identity, the study's checks, and the analysis on synthetic measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asymptote.config import ConfigError, DataConfig, ModelConfig, TrainConfig, build
from asymptote.fits import PowerLaw
from asymptote.scaling import (
    CoordinateDescent,
    certified,
    member_train,
    monotone_decreasing,
    overfits,
    point_job,
)
from asymptote.scaling_analysis import SizeData, StudyData, analyse
from asymptote.scaling_config import FitConfig
from asymptote.scaling_plots import fitted_targets
from asymptote.search_space import RECIPES, Point, SearchGrid, at_edges, neighbours

GRID = SearchGrid()  # the paper's grid
ALL = RECIPES["regularized"]


def test_interior_point_has_six_neighbours_and_edges_fewer():
    mid = Point(1e-3, 0.8, 8)
    assert len(neighbours(mid, GRID, ALL)) == 6
    assert set(neighbours(mid, GRID, ALL)) >= {Point(3e-4, 0.8, 8), Point(1e-3, 1.6, 8), Point(1e-3, 0.8, 16)}
    corner = Point(1e-4, 0.0, 1)
    assert sorted(neighbours(corner, GRID, ALL)) == sorted(
        [Point(3e-4, 0.0, 1), Point(1e-4, 0.1, 1), Point(1e-4, 0.0, 2)]
    )
    assert len(neighbours(mid._replace(weight_decay=0.1), GRID, RECIPES["standard"])) == 4


def test_a_point_at_a_grid_edge_names_the_axes_a_larger_grid_could_move():
    grid = SearchGrid(lr=[1e-3, 3e-3], weight_decay=[0.4], epochs=[8, 16, 32])
    assert at_edges(Point(3e-3, 0.4, 32)._asdict(), grid, ALL) == ["epochs", "lr"]
    assert at_edges(Point(1e-3, 0.4, 16)._asdict(), grid, ALL) == ["lr"]
    # one grid value is a fixed setting, not a searched edge; axes not searched are not judged
    assert at_edges(Point(3e-3, 0.4, 16)._asdict(), grid, ("epochs", "weight_decay")) == []


def test_certification_needs_every_existing_neighbour_run_and_none_better():
    p = Point(1e-3, 0.8, 8)
    results = {n: 3.0 for n in neighbours(p, GRID, ALL)} | {p: 2.9}
    assert certified(p, results, GRID, ALL)
    missing = dict(results)
    missing.pop(Point(1e-3, 0.8, 16))
    assert not certified(p, missing, GRID, ALL)
    better = results | {Point(3e-3, 0.8, 8): 2.8}
    assert not certified(p, better, GRID, ALL)
    diverged = results | {Point(3e-3, 0.8, 8): math.nan}  # a NaN neighbour is worse, not better
    assert certified(p, diverged, GRID, ALL)
    edge = Point(3e-2, 6.4, 64)  # only three neighbours exist at this corner
    assert certified(edge, {edge: 2.0} | {n: 2.5 for n in neighbours(edge, GRID, ALL)}, GRID, ALL)


def bowl(p: Point) -> float:
    """A smooth synthetic loss with its minimum at lr=1e-3, wd=1.6, epochs=16."""
    return (
        2.0
        + 0.1 * (math.log10(p.lr) + 3) ** 2
        + 0.05 * math.log2((p.weight_decay + 0.05) / 1.65) ** 2
        + 0.02 * math.log2(p.epochs / 16) ** 2
    )


@pytest.mark.parametrize(
    "recipe, expected", [("regularized", Point(1e-3, 1.6, 16)), ("standard", Point(1e-3, 0.1, 16))]
)
def test_descent_walks_to_the_optimum_and_certifies_it(recipe, expected):
    cd = CoordinateDescent(GRID, RECIPES[recipe], Point(1e-2, 0.1, 1))
    rounds = 0
    while cd.pending():
        for p in cd.pending():
            cd.record(p, bowl(p))
        rounds += 1
    assert cd.best() == expected and cd.certified
    assert len(cd.results) < GRID.size(RECIPES[recipe]) // 2  # fewer runs than the grid
    assert all(p.weight_decay == 0.1 for p in cd.results) or recipe == "regularized"


def run_descent(cd: CoordinateDescent, loss) -> list[list[Point]]:
    rounds = []
    while cd.pending():
        rounds.append(cd.pending())
        for p in rounds[-1]:
            cd.record(p, loss(p))
    return rounds


def test_line_walk_reaches_the_same_certified_optimum_with_fewer_runs():
    start = Point(1e-2, 0.1, 1)
    whole = CoordinateDescent(GRID, ALL, start)
    lines = CoordinateDescent(GRID, ALL, start, walk="lines")
    run_descent(whole, bowl)
    rounds = run_descent(lines, bowl)
    assert lines.best() == whole.best() == Point(1e-3, 1.6, 16) and lines.certified
    assert len(lines.results) < len(whole.results)
    assert max(len(r) for r in rounds) <= 2  # one axis' two neighbours, or one step along a line
    # a pure function of the results: a descent handed them in another order resumes at the same place
    resumed = CoordinateDescent(GRID, ALL, start, dict(reversed(list(lines.results.items()))), walk="lines")
    assert resumed.best() == lines.best() and resumed.pending() == [] and resumed.certified
    half = dict(list(lines.results.items())[: len(lines.results) // 2])
    partial = CoordinateDescent(GRID, ALL, start, dict(half), walk="lines")
    assert partial.pending() and not set(partial.pending()) & set(half)
    assert CoordinateDescent(GRID, ALL, start, walk="lines").pending() == [start]


def test_line_walk_stops_at_a_certified_point_on_a_rugged_loss():
    rng = np.random.default_rng(0)
    table = {}

    def rugged(p: Point) -> float:  # no structure for a line to follow; a NaN is a diverged run
        if p not in table:
            table[p] = math.nan if rng.random() < 0.1 else float(rng.random())
        return table[p]

    for seed_start in [Point(1e-2, 0.1, 1), Point(1e-4, 6.4, 64), Point(1e-3, 0.8, 8)]:
        cd = CoordinateDescent(GRID, ALL, seed_start, walk="lines")
        run_descent(cd, rugged)
        assert cd.certified and certified(cd.best(), cd.results, GRID, ALL)
        finite = [v for v in cd.results.values() if math.isfinite(v)]
        assert cd.results[cd.best()] == min(finite)  # the walk's point is the best it ran
    with pytest.raises(ValueError, match="walk='spiral'"):
        CoordinateDescent(GRID, ALL, Point(1e-2, 0.1, 1), walk="spiral")


def test_spare_points_fill_idle_capacity_without_changing_the_line_walk():
    start = Point(1e-2, 0.1, 1)
    plain = CoordinateDescent(GRID, ALL, start, walk="lines")
    path = run_descent(plain, bowl)
    eager = CoordinateDescent(GRID, ALL, start, walk="lines")
    assert eager.spare() == []  # nothing before the start has run
    eager_path, extra = [], 0
    while need := eager.pending():
        spare = eager.spare()
        assert not set(spare) & (set(need) | set(eager.results))
        here = eager.best()
        assert all(s in neighbours(here, GRID, ALL) for s in spare)
        eager_path.append(need)
        for p in need + spare[:1]:  # one idle slot: the first spare point runs beside the needed ones
            eager.record(p, bowl(p))
        extra += bool(spare)
    assert extra > 0
    assert eager.best() == plain.best() and eager.certified
    # spare results never move the walk: it asks for no more rounds than without them, and for
    # points the plain walk also needed
    assert len(eager_path) <= len(path)
    assert {p for r in eager_path for p in r} <= {p for r in path for p in r}
    # neither walk has spare points under a run cap (they would spend it) nor walking neighbourhoods
    assert CoordinateDescent(GRID, ALL, start, dict(plain.results), walk="lines", max_runs=99).spare() == []
    whole = CoordinateDescent(GRID, ALL, start)
    whole.record(start, bowl(start))
    assert whole.spare() == []


def test_descent_cap_stops_uncertified_and_start_must_be_on_grid():
    cd = CoordinateDescent(GRID, ALL, Point(1e-2, 0.1, 1), max_runs=3)
    while cd.pending():
        for p in cd.pending()[: 3 - len(cd.results)]:
            cd.record(p, bowl(p))
    assert cd.exhausted and not cd.certified and cd.done
    with pytest.raises(ValueError, match="lr=0.005 is not on the grid"):
        CoordinateDescent(GRID, ALL, Point(5e-3, 0.1, 1))


def test_member_recipe_doubles_epochs_halves_weight_decay_and_seeds_by_k():
    template = TrainConfig(batch_size=8, warmup_steps=3)
    m = member_train(template, Point(3e-3, 1.6, 8), k=3)
    assert (m.lr, m.weight_decay, m.epochs, m.train_seed, m.data_seed) == (3e-3, 0.8, 16, 3, 3)
    assert m.batch_size == 8 and m.max_steps is None
    with pytest.raises(ValueError, match="k=0"):
        member_train(template, Point(3e-3, 1.6, 8), k=0)


def test_equal_points_are_equal_runs_whoever_asks():
    model, data, train = ModelConfig(preset="cpu-0.1m"), DataConfig(max_train_tokens=5000), TrainConfig()
    a = point_job(model, data, "data/abc", train, Point(1e-3, 0.1, 2), name="from tune")
    b = point_job(
        model, data, "data/abc", train, Point(1e-3, 0.1, 2), name="from the flow", store={"uri": "/elsewhere"}
    )
    assert a.key == b.key and a.run_rel == b.run_rel
    assert point_job(model, data, "data/abc", train, Point(1e-3, 0.2, 2)).key != a.key
    assert (
        point_job(model, DataConfig(max_train_tokens=9000), "data/abc", train, Point(1e-3, 0.1, 2)).key
        != a.key
    )


def test_checks():
    assert overfits({1: 3.0, 2: 2.8, 4: 2.9}, tol=0.01)
    assert not overfits({1: 3.0, 2: 2.8, 4: 2.805}, tol=0.01)
    assert not overfits({1: 3.0, 2: 2.8, 4: 2.7}, tol=0.0)
    assert monotone_decreasing([3.0, 2.9, 2.85]) and not monotone_decreasing([3.0, 2.9, 2.9])
    with pytest.raises(ValueError, match="at least 2"):
        overfits({4: 2.0}, tol=0.0)


def test_grid_validation_names_the_field():
    with pytest.raises(ConfigError, match="epochs.*strictly increasing"):
        build(SearchGrid, {"epochs": [1, 4, 2]})
    with pytest.raises(ConfigError, match="lr.*> 0"):
        build(SearchGrid, {"lr": [0.0, 1e-3]})


def synthetic_study(seed: int = 0) -> StudyData:
    """Test losses drawn from known laws with seed noise 0.004: regularized E=2.0 below standard 2.15,
    ensembles lower at every size, WD 0.1 overfitting with epochs."""
    rng = np.random.default_rng(seed)
    reg, std = PowerLaw(30.0, 0.3, 2.0), PowerLaw(30.0, 0.3, 2.15)

    def seeds(v, n=3):
        return [float(v + e) for e in rng.normal(0.0, 0.004, n)]

    sizes = []
    for i, n in enumerate([1e5, 2e5, 4e5, 8e5, 1.6e6]):
        c = reg(n) - 0.12
        curve = [c + 0.12 / k for k in range(1, 5)]
        sizes.append(
            SizeData(
                label=f"s{i}",
                params=int(n),
                standard=seeds(std(n)),
                regularized=seeds(reg(n)),
                regularized_wd=0.8,
                members=seeds(curve[0], 4),
                ensemble={"logits": curve, "probs": [v + 0.01 for v in curve]},
            )
        )
    data_law = PowerLaw(400.0, 0.45, 1.95)
    efficiency = {b: seeds(data_law(b)) for b in (25_000, 50_000, 100_000, 200_000)}
    return StudyData(
        sizes=sizes,
        base_budget=50_000,
        efficiency=efficiency,
        sweep={"standard": {1: 3.0, 4: 2.7, 16: 2.8}, "regularized": {1: 3.0, 4: 2.6, 16: 2.55}},
        wd_grid=[0.1, 0.4, 0.8, 1.6],  # 0.8: interior
    )


def test_analysis_recovers_asymptotes_and_supports_the_true_claims():
    out = analyse(synthetic_study(), FitConfig(n_boot=300))
    for name, truth in (("regularized_N", 2.0), ("standard_N", 2.15)):
        fit = out.fits[name]
        assert fit.identified, fit.params
        lo, hi = fit.ci()
        assert lo <= truth <= hi
    c = out.claims
    assert c["regularized_below_standard_measured"].supported
    assert c["regularized_below_standard_measured"].estimate == pytest.approx(0.15, abs=0.01)
    assert c["ensemble_loss_falls_in_k"].supported and c["more_epochs_help_with_tuned_wd"].supported
    assert c["tuned_wd_well_above_standard"].supported  # 0.8 >= 3 x 0.1 at every size
    for claim in c.values():
        assert claim.supported == (claim.identified and claim.p_direction >= 0.95)
        if claim.estimate is not None and None not in claim.ci:
            assert claim.ci[0] <= claim.ci[1]
    assert out.checks["ensemble_monotone_in_k"] is True
    assert out.checks["joint_below_regularized"] == c["joint_below_regularized"].supported
    assert out.seed_noise == pytest.approx(0.004, abs=0.0015)


def test_a_false_claim_is_not_supported():
    data = synthetic_study()
    for s in data.sizes:  # swap the recipes: the paper's direction is now false
        s.standard, s.regularized = s.regularized, s.standard
    out = analyse(data, FitConfig(n_boot=300))
    assert not out.claims["regularized_below_standard_measured"].supported
    assert out.claims["regularized_below_standard_measured"].p_direction < 0.05
    assert not out.claims["regularized_below_standard"].supported


def test_three_sizes_are_not_identified_and_give_no_verdict():
    data = synthetic_study()
    data.sizes = data.sizes[:3]
    data.efficiency = {}
    out = analyse(data, FitConfig(n_boot=50))
    assert out.fits["regularized_N"].ok and not out.fits["regularized_N"].identified
    assert "3 points for 3 parameters" in out.fits["regularized_N"].params["reason"]
    claim = out.claims["regularized_below_standard"]
    assert not claim.identified and not claim.supported and "3 points" in claim.note
    assert out.fits["ensemble_K/s0"].identified  # K = 4 members: L(K) per size still identified
    assert out.multipliers["joint"]["value"] is None and out.checks["joint_below_regularized"] is False
    assert out.claims["regularized_below_standard_measured"].supported  # measured gaps need no fit


def test_one_seed_measures_no_noise_and_judges_nothing():
    data = synthetic_study()
    for s in data.sizes:
        s.standard, s.regularized, s.members = s.standard[:1], s.regularized[:1], s.members[:1]
        s.ensemble = {}
    data.efficiency = {b: v[:1] for b, v in data.efficiency.items()}
    out = analyse(data, FitConfig(n_boot=50))
    noisy = {
        k: c for k, c in out.claims.items() if k != "tuned_wd_well_above_standard"
    }  # a choice, not a loss
    assert out.seed_noise is None and not any(c.supported for c in noisy.values())
    assert "seed" in out.fits["regularized_N"].reason


def test_fit_table_shows_numbers_only_for_identified_fits():
    from asymptote.reports import md_table
    from asymptote.reports.scaling import _fit_rows
    from asymptote.scaling_analysis import Analysis, FitOutcome

    ci = {"E": [1.0, 2.0], "alpha": [0.1, 0.5]}
    good = {"A": 2.0, "alpha": 0.3, "E": 1.5, "ci": ci, "n_points": 5, "identified": True, "inflation": 1.0}
    bound = good | {
        "A": 2.7e40,
        "alpha": 10.0,
        "E": 3.3,
        "identified": False,
        "reason": "exponent at its bound",
    }
    fits = {
        "good": FitOutcome(ok=True, params=good),
        "bound": FitOutcome(ok=True, params=bound),
        "missing": FitOutcome(ok=False, reason="needs 2 members"),
    }
    table = md_table(_fit_rows(Analysis(fits=fits, multipliers={}, checks={}, seed_noise=None)))
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "1.5000" in lines["good"] and "[1.0000, 2.0000]" in lines["good"]
    assert (
        "2.7e+40" not in table and "3.3" not in lines["bound"] and "exponent at its bound" in lines["bound"]
    )
    assert "needs 2 members" in lines["missing"]


def test_ensemble_verdict_uses_the_mean_over_subsets():
    """A first-k curve that rises because member 2 is a poor draw: the mean over k-subsets still falls
    at every k, and the verdict (from those means) supports the claim."""
    import itertools

    rng = np.random.default_rng(3)
    data = synthetic_study()
    for s in data.sizes:
        luck = rng.normal(0.0, 0.02, 4)
        luck[:2] = -0.02, 0.1  # member 2 is a poor draw: the first-2 ensemble is worse than member 1
        subsets = {}
        for k in range(1, 5):
            for members in itertools.combinations(range(4), k):
                gain = 0.06 / k + float(np.mean(luck[list(members)]))
                subsets[",".join(map(str, members))] = (
                    s.regularized[0] + gain + rng.normal(0, 0.001) * (1 < k < 4)
                )
        s.subsets = subsets
        s.members = [subsets[str(i)] for i in range(4)]
        s.ensemble = {"logits": [subsets[",".join(map(str, range(k)))] for k in range(1, 5)]}
        assert s.ensemble["logits"][1] > s.ensemble["logits"][0]  # the first-k curve rises
        assert all(b < a for a, b in zip(s.subset_curve(), s.subset_curve()[1:], strict=False))
    out = analyse(data, FitConfig(n_boot=300))
    claim = out.claims["ensemble_loss_falls_in_k"]
    assert claim.supported and claim.p_direction >= 0.95 and out.checks["ensemble_monotone_in_k"]
    assert claim.estimate == pytest.approx(0.06 * 0.75, abs=0.005)


def test_the_data_plot_draws_only_fitted_asymptotes():
    multipliers = {
        "regularized": {"target_loss": 0.0, "identified": False, "reason": "not identified: E at its bound"},
        "joint": {"target_loss": 2.31, "identified": True},
        "standard": {"value": None, "reason": "needs standard_D"},
    }
    assert fitted_targets(multipliers) == {"joint": 2.31}


@pytest.mark.parametrize(
    ("grid", "chosen", "why"),
    [
        ([0.1, 0.8], 0.8, "fewer than 3 values"),  # the main job's grid: every choice is an edge
        ([0.1, 0.4, 0.8], 0.8, "the top of its grid"),
        ([0.8, 1.6, 3.2], 0.8, "the bottom of its grid"),
        ([], 0.8, "grid not recorded"),
    ],
)
def test_a_weight_decay_at_its_grid_edge_supports_nothing(grid, chosen, why):
    """A tuned value at the top of its grid once read "supported, 0.8 [0.8, 0.8], p = 1.000"."""
    from asymptote.reports.scaling import _claim_rows

    data = synthetic_study()
    data.wd_grid = grid
    data.sizes[-1].regularized_wd = chosen
    out = analyse(data, FitConfig(n_boot=50))
    c = out.claims["tuned_wd_well_above_standard"]
    assert not c.supported and not c.identified and why in c.note
    assert c.estimate is None and c.p_direction is None
    row = next(r for r in _claim_rows(out) if r["claim"] == "tuned_wd_well_above_standard")
    assert row["verdict"].endswith("not identified") and row["estimate"] == "n/a" and row["p_direction"] == ""
    assert "p_direction" in row and "p" not in row


def test_claims_name_their_share_of_draws_p_direction_and_read_old_results():
    from asymptote.scaling_config import Claim

    out = analyse(synthetic_study(), FitConfig(n_boot=50))
    figures = figures_of(out)
    assert all("p_direction" in c and "p" not in c for c in figures["claims"].values())
    old = Claim.model_validate(
        {
            "estimate": 1.0,
            "ci": [0.5, 1.5],
            "p": 0.97,
            "supported": True,
            "identified": True,
            "direction": "x > 0",
        }
    )
    assert old.p_direction == 0.97 and "p" not in old.model_dump()


def figures_of(analysis):
    from asymptote.scaling_analysis import figures

    return figures(synthetic_study(), analysis)
