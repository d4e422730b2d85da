"""The planner: on a study drawn from known laws it recommends the known optimum, it refuses questions
outside what its fits cover unless asked to extrapolate (and then says how far), the inverse question
agrees with the forward one, and `asymptote plan` answers from a study in a store."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from asymptote.cli import app
from asymptote.fits import PowerLaw
from asymptote.flops import train_flops_per_token
from asymptote.planner import (
    Design,
    OutOfRange,
    PlanInputs,
    Planner,
    SizeDesign,
    design_of,
    gpu_hours_to_flops,
)
from asymptote.scaling_analysis import SizeData, StudyData
from asymptote.scaling_config import FitConfig, ScalingStudyConfig
from asymptote.store import Store, layout

TOKENS = 100_000
PARAMS = np.geomspace(1e4, 1e6, 5).round().astype(int)
# Known truth: the standard recipe is cheap (4 epochs) and the regularized one better per parameter
# but 8x the epochs, so small budgets favour standard and large ones regularized.
LAWS = {"standard": PowerLaw(60.0, 0.4, 2.5), "regularized": PowerLaw(30.0, 0.3, 2.1)}
EPOCHS = {"standard": 4.0, "regularized": 32.0}
NOISE = 0.003


def study(seed: int = 0) -> PlanInputs:
    rng = np.random.default_rng(seed)

    def seeds(recipe: str, n: int) -> list[float]:
        return (LAWS[recipe](n) + rng.normal(0, NOISE, 3)).tolist()

    sizes = [
        SizeData(
            label=f"s{i}", params=int(n), standard=seeds("standard", n), regularized=seeds("regularized", n)
        )
        for i, n in enumerate(PARAMS)
    ]
    design = Design(
        tokens=TOKENS,
        members=1,
        sizes=[
            SizeDesign(
                label=f"s{i}",
                params=int(n),
                flops_per_token=6.0 * n,  # exactly a power of N, so costs are known in closed form
                recipes={
                    "standard": {"lr": 1e-3, "weight_decay": 0.1, "epochs": EPOCHS["standard"]},
                    "regularized": {"lr": 3e-3, "weight_decay": 0.8, "epochs": EPOCHS["regularized"]},
                },
            )
            for i, n in enumerate(PARAMS)
        ],
    )
    return PlanInputs(
        study=StudyData(sizes=sizes, base_budget=TOKENS), design=design, fits=FitConfig(n_boot=300)
    )


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(study())


def known_optimum(flops: float) -> tuple[str, float, float]:
    """(recipe, N, loss) of the true best plan: each recipe's largest affordable N, then the lower loss."""
    plans = []
    for recipe, law in LAWS.items():
        n = min(flops / (6.0 * TOKENS * EPOCHS[recipe]), PARAMS.max())
        plans.append((recipe, n, float(law(n))))
    return min(plans, key=lambda p: p[2])


@pytest.mark.parametrize("n_fraction", [0.05, 0.9])
def test_recommends_the_known_optimum(planner, n_fraction):
    flops = 6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * n_fraction
    recipe, n, loss = known_optimum(flops)
    plan = planner.recommend(flops, TOKENS)
    assert plan.option == recipe
    assert plan.params == pytest.approx(n, rel=1e-6)
    assert plan.flops == pytest.approx(min(flops, 6.0 * TOKENS * EPOCHS[recipe] * n), rel=1e-6)
    assert plan.loss == pytest.approx(loss, abs=0.01)
    assert plan.loss_ci[0] <= loss <= plan.loss_ci[1]
    assert plan.epochs == EPOCHS[recipe] and not plan.extrapolations


def test_the_two_budgets_above_pick_different_recipes():
    """Guards the test above against being trivially true: the truth switches recipe between them."""
    small, large = (6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * f for f in (0.05, 0.9))
    assert known_optimum(small)[0] != known_optimum(large)[0]


def test_refuses_out_of_range_unless_asked_to_extrapolate(planner):
    too_much = 6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * 20
    with pytest.raises(OutOfRange, match="above the most expensive plan.*--extrapolate"):
        planner.recommend(too_much, TOKENS)
    with pytest.raises(OutOfRange, match="below the cheapest"):
        planner.recommend(1.0, TOKENS)
    with pytest.raises(OutOfRange, match=r"N is 4x beyond the largest size fitted"):
        planner.predict(4 * PARAMS.max())
    with pytest.raises(OutOfRange, match="no L\\(D\\) fit"):
        planner.predict(PARAMS[2], tokens=2 * TOKENS, extrapolate=True)
    plan = planner.recommend(too_much, TOKENS, extrapolate=True)
    assert plan.params > PARAMS.max()
    assert any("beyond the largest size fitted" in e for e in plan.extrapolations)
    assert plan.loss == pytest.approx(float(LAWS[plan.option](plan.params)), abs=0.03)


def test_inverse_agrees_with_forward(planner):
    for fraction in (0.05, 0.3, 0.9):
        flops = 6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * fraction
        forward = planner.recommend(flops, TOKENS)
        back = planner.budget_for(forward.loss, TOKENS)
        assert back.plan.option == forward.option
        assert back.flops == pytest.approx(forward.flops, rel=1e-6)
        assert back.plan.loss == pytest.approx(forward.loss, abs=1e-9)
        lo, hi = back.flops_ci
        assert lo <= back.flops and (hi is None or back.flops <= hi)
    with pytest.raises(OutOfRange, match="asymptote"):
        planner.budget_for(LAWS["regularized"].E - 0.5, TOKENS)


def test_design_records_each_size_flops_and_certified_settings():
    cfg = ScalingStudyConfig()
    rows = [
        SimpleNamespace(size=label, recipe=r, budget=b, best={"lr": 1e-2, "weight_decay": wd, "epochs": 2.0})
        for label in cfg.labels
        for r, wd in (("standard", 0.1), ("regularized", 0.8))
        for b in (cfg.tokens, cfg.tokens * 2)  # other budgets (the L(D) searches) are not the plan's
    ]
    design = design_of(cfg, rows, {label: 1000 * (i + 1) for i, label in enumerate(cfg.labels)})
    assert [s.flops_per_token for s in design.sizes] == [train_flops_per_token(m) for m in cfg.sizes]
    assert design.sizes[0].recipes["regularized"]["weight_decay"] == 0.8
    assert design.tokens == cfg.tokens and design.members == cfg.ensemble.members


def test_other_token_counts_move_along_the_data_law():
    data_law = PowerLaw(400.0, 0.3, 1.2)
    inputs = study()
    rng = np.random.default_rng(3)
    budgets = [TOKENS // 4, TOKENS // 2, TOKENS, TOKENS * 2, TOKENS * 4]
    inputs.study.efficiency = {b: (data_law(b) + rng.normal(0, NOISE, 3)).tolist() for b in budgets}
    planner = Planner(inputs)
    n = float(PARAMS[2])
    moved = planner.predict(n, tokens=TOKENS * 2, option="standard")
    expected = LAWS["standard"](n) + data_law(TOKENS * 2) - data_law(TOKENS)
    assert moved.loss == pytest.approx(float(expected), abs=0.02)
    assert "standard_D" in moved.fits and any("shifted" in note for note in moved.notes)
    with pytest.raises(OutOfRange, match="outside the budgets the data law"):
        planner.predict(n, tokens=TOKENS * 10)
    far = planner.predict(n, tokens=TOKENS * 10, extrapolate=True)
    assert any("2.5x beyond the largest budget" in e for e in far.extrapolations)


def test_gpu_hours_are_flops_at_the_stated_throughput():
    assert gpu_hours_to_flops(2.0, 1e14, gpus=4) == pytest.approx(2 * 3600 * 1e14 * 4)
    with pytest.raises(OutOfRange):
        gpu_hours_to_flops(1.0, 0.0)


def test_cli_plans_from_a_study_in_the_store(tmp_path):
    inputs = study()
    store = Store(str(tmp_path))
    doc = {
        "study": inputs.study.model_dump(),
        "design": inputs.design.model_dump(),
        "fit_config": {"n_boot": 200},
    }
    with store.writer(layout("report", flow="scaling", key="k1"), kind="report") as d:
        (d / "study.json").write_text(json.dumps(doc))
    runner = CliRunner()
    store_args = ["plan", "--store", str(tmp_path)]
    flops = 6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * 0.9
    ok = runner.invoke(app, ["plan", "--store", str(tmp_path), "--flops", str(flops), "--json"])
    assert ok.exit_code == 0, ok.output
    answer = json.loads(ok.stdout.strip().splitlines()[-1])
    assert answer["option"] == known_optimum(flops)[0] and answer["level"] == 0.95
    far = runner.invoke(app, ["plan", "--store", str(tmp_path), "--params", str(PARAMS.max() * 3)])
    assert far.exit_code == 2 and "--extrapolate" in far.output
    yes = runner.invoke(
        app, ["plan", "--store", str(tmp_path), "--params", str(PARAMS.max() * 3), "--extrapolate"]
    )
    assert yes.exit_code == 0 and "EXTRAPOLATES" in yes.output and "3x beyond" in yes.output
    named = runner.invoke(app, [*store_args, "--params", str(PARAMS[1]), "--option", "standard", "--json"])
    assert json.loads(named.stdout.strip().splitlines()[-1])["option"] == "standard"


def test_an_ensemble_plan_lies_inside_its_own_interval():
    """The ensemble options' laws bootstrap from the curve's errors, not its values: a K = 2 plan's
    interval surrounds its estimate (it sat near twice the estimate when fed the values)."""
    inputs = study()
    for s in inputs.study.sizes:
        single = LAWS["regularized"](s.params)
        s.members = [single + 0.002, single - 0.002, single + 0.001]
        s.ensemble = {"logits": [single, single - 0.05, single - 0.07]}
    plan = Planner(inputs).predict(float(PARAMS[2]), TOKENS, option="ensemble-2")
    assert plan.members == 2
    assert plan.loss_ci[0] <= plan.loss <= plan.loss_ci[1] and plan.law_ci[0] <= plan.loss <= plan.law_ci[1]
    assert plan.loss == pytest.approx(LAWS["regularized"](PARAMS[2]) - 0.05, abs=0.01)


def _rising_standard(inputs: PlanInputs) -> PlanInputs:
    """The standard recipe's loss rises with N: its law is flat at a bound, so it is not identified."""
    for s in inputs.study.sizes:
        s.standard = [2.6 + 0.01 * np.log(s.params) + e for e in (0.003, -0.003, 0.0)]
    return inputs


def test_an_unidentified_law_is_never_a_plan_and_every_plan_names_what_it_could_not_evaluate():
    planner = Planner(_rising_standard(study()))
    assert not planner.options["standard"].fit.identified
    for fraction in (0.01, 0.05, 0.3, 0.9):  # small budgets favoured standard when it was identified
        flops = 6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * fraction
        plan = planner.recommend(flops, TOKENS)
        assert plan.option == "regularized"
        assert "not identified" in plan.unevaluated["standard"]
        assert "ensemble-2+" in plan.unevaluated  # the study measured no ensembles
        assert any(line.startswith("not evaluated: standard:") for line in plan.lines())
    assert (
        planner.predict(float(PARAMS[2])).unevaluated["standard"].startswith("standard_N is not identified")
    )
    with pytest.raises(
        OutOfRange, match="option 'standard' cannot be planned from: standard_N is not identified"
    ):
        planner.predict(float(PARAMS[2]), option="standard")
    back = planner.budget_for(planner.predict(float(PARAMS[3])).loss, TOKENS)
    assert back.plan.option == "regularized" and "standard" in back.plan.unevaluated


def test_a_study_without_an_identified_law_is_refused_naming_every_option():
    inputs = study()
    inputs.study.sizes, inputs.design.sizes = inputs.study.sizes[:3], inputs.design.sizes[:3]
    planner = Planner(inputs)
    flops = 6.0 * TOKENS * EPOCHS["standard"] * PARAMS[1]
    for ask in (
        lambda: planner.recommend(flops, TOKENS),
        lambda: planner.predict(float(PARAMS[1])),
        lambda: planner.budget_for(2.6, TOKENS),
    ):
        with pytest.raises(OutOfRange) as err:
            ask()
        for name in ("standard", "regularized", "ensemble-2+"):
            assert f"{name}: " in str(err.value)
        assert "3 points for 3 parameters" in str(err.value)


@pytest.mark.parametrize("seed", range(4))
def test_every_answer_lies_inside_its_own_intervals(seed):
    """Over noisy studies, K = 1..3 ensembles, budgets in and beyond the fits: estimate within interval."""
    inputs = study(seed)
    rng = np.random.default_rng(seed)
    for s in inputs.study.sizes:
        single = LAWS["regularized"](s.params)
        s.members = (single + rng.normal(0, NOISE, 3)).tolist()
        s.ensemble = {"logits": [single, single - 0.05, single - 0.07]}
    planner = Planner(inputs)
    answers = []
    for fraction in (0.02, 0.2, 0.9, 5.0):
        flops = 6.0 * TOKENS * EPOCHS["regularized"] * PARAMS.max() * fraction
        answers.append(planner.recommend(flops, TOKENS, seeds=int(rng.integers(1, 4)), extrapolate=True))
    answers += [planner.predict(float(PARAMS[2]), option=o) for o in planner.usable]
    for a in answers:
        assert a.loss_ci[0] <= a.loss <= a.loss_ci[1] and a.law_ci[0] <= a.loss <= a.law_ci[1], a.lines()
    back = planner.budget_for(answers[1].loss, TOKENS)
    lo, hi = back.flops_ci
    assert (lo is None or lo <= back.flops) and (hi is None or back.flops <= hi)


def test_an_interval_that_misses_its_estimate_is_widened_and_says_so():
    from asymptote.planner import _contain

    assert _contain(1.0, (0.9, 1.1), "x") == ([0.9, 1.1], [])
    ci, notes = _contain(3.1662, (6.1888, 6.4803), "predicted test loss")
    assert ci == [3.1662, 6.4803] and "missed the point estimate" in notes[0]
    assert _contain(5.0, (1.0, None), "compute")[0] == [1.0, None]
