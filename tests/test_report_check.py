"""The report check: it passes results that agree with themselves, generated at random in every shape
a result takes (figures, fits, table rows, plans, plotted asymptotes, splits), and fails each one the
moment a single estimate leaves its interval, a plot draws an asymptote that was not fitted, a plan
rests on an unidentified law or hides what it could not evaluate, or a split is misnamed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from asymptote import report_check
from asymptote.report_check import check, check_report, check_report_dir, check_text

SPLIT_NAMES = ["test", "validation", "validation/second-half", "validation (not held-out)", "train"]


# ----------------------------------------------------------------------------- generated results


def figure(rng) -> dict:
    """{estimate, ci, p_direction} with the estimate inside (sometimes on an end, sometimes unbounded)."""
    lo, hi = np.sort(rng.normal(2.0, 0.5, 2))
    est = float(rng.choice([lo, hi, rng.uniform(lo, hi)]))
    ci = [float(lo), float(hi)]
    if rng.random() < 0.1:
        ci[1] = None  # unbounded above
    return {"estimate": est, "ci": ci, "p_direction": float(rng.uniform(0.5, 1))}


def fit(rng, identified: bool = True) -> dict:
    e = float(rng.uniform(1, 3))
    params = {"A": 10.0, "alpha": 0.3, "E": e, "identified": identified}
    params["ci"] = {"E": [e - rng.uniform(0, 0.2), e + rng.uniform(0, 0.2)], "alpha": [0.2, 0.4]}
    if not identified:  # its numbers claim nothing: a biased bootstrap may miss them
        params["ci"]["E"] = [e + 1.0, e + 2.0]
    return {"ok": True, "params": params, "reason": ""}


def study_doc(rng) -> dict:
    """A scaling study's study.json: fits (some not identified) and what the plots drew from them."""
    names = [f"f{i}" for i in range(int(rng.integers(1, 6)))]
    fits = {n: fit(rng, identified=bool(rng.random() < 0.6)) for n in names}
    plotted = [
        {"plot": "p.png", "what": "asymptote", "fit": n, "value": f["params"]["E"], "identified": True}
        for n, f in fits.items()
        if f["params"]["identified"]
    ]
    return {"analysis": {"fits": fits}, "plotted": plotted}


def plan(rng) -> dict:
    loss = figure(rng)
    return {
        "option": "regularized",
        "loss": loss["estimate"],
        "loss_ci": loss["ci"],
        "law_ci": loss["ci"],
        "fits": ["regularized_N"],
        "notes": [],
        "basis_identified": True,
        "unevaluated": {"standard": "standard_N is not identified: flat"},
    }


def row(rng) -> dict:
    f = figure(rng)
    return {"figure": "x", "estimate": f["estimate"], "ci_low": f["ci"][0], "ci_high": f["ci"][1]}


def result(rng, depth: int = 0) -> dict:
    """A random nest of the shapes above, under a split named by its real name."""
    split = str(rng.choice(SPLIT_NAMES))
    loss_key = "test_loss" if split == "test" else "loss"
    out: dict = {"split": split, loss_key: float(rng.uniform(1, 3))}
    makers = [figure, plan, row, lambda r: {"value": figure(r)["estimate"], "ci": None}]
    for i in range(int(rng.integers(1, 5))):
        out[f"k{i}"] = makers[int(rng.integers(len(makers)))](rng)
    out["rows"] = [row(rng) for _ in range(int(rng.integers(0, 3)))]
    if depth < 2 and rng.random() < 0.5:
        out["child"] = result(rng, depth + 1)
    return out


def _figures(node, path=()):
    """Paths to every {estimate, ci} figure with a finite lower end in a generated result."""
    if isinstance(node, dict):
        if "estimate" in node and isinstance(node.get("ci"), list) and node["ci"][0] is not None:
            yield path
        for k, v in node.items():
            yield from _figures(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _figures(v, (*path, i))


def _at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


# ----------------------------------------------------------------------------- properties


def test_generated_consistent_results_pass():
    rng = np.random.default_rng(0)
    for _ in range(300):
        doc = result(rng)
        assert check(doc) == [], check(doc)
        study = study_doc(rng)
        assert check(study) == [], check(study)


def test_one_estimate_outside_its_interval_fails_and_is_named():
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(300):
        doc = result(rng)
        paths = list(_figures(doc))
        if not paths:
            continue
        bad = copy.deepcopy(doc)
        fig = _at(bad, paths[int(rng.integers(len(paths)))])
        fig["estimate"] = fig["ci"][0] - float(rng.uniform(1e-3, 5.0))  # just or far below its interval
        problems = check(bad)
        assert len(problems) == 1 and "outside its own interval" in problems[0], problems
        checked += 1
    assert checked > 200


def test_every_kind_of_interval_is_held_to_its_estimate():
    assert check({"value": 2.0, "ci": [1.0, 1.5]})  # a multiplier
    assert check({"loss": 3.1662, "loss_ci": [6.1888, 6.4803]})  # the K = 2 plan of issue 38
    assert check({"flops": 10.0, "flops_ci": [11.0, None]})  # unbounded above, still below
    assert check({"figure": "x", "estimate": 1.0, "ci_low": 1.1, "ci_high": None})  # a table row
    assert check({"E": 0.0, "ci": {"E": [1.0, 2.0]}, "identified": True})  # a fit's asymptote
    assert check({"estimate": 1.0, "ci": [2.0, 0.5]})  # reversed
    ladder = {
        "test_loss": {"single": 2.5, "soup": 2.4},
        "test_ci": {"single": [2.4, 2.6], "soup": [2.3, 2.5]},
    }
    assert check(ladder) == [] and len(check(ladder | {"test_loss": {"single": 2.5, "soup": 2.6}})) == 1
    retained = {"retained": {"sequence": 0.66}, "retained_ci": {"sequence": [0.62, 0.70]}}
    assert check(retained) == [] and check(retained | {"retained": {"sequence": 0.996}})
    assert check({"E": 0.0, "ci": {"E": [1.0, 2.0]}, "identified": False}) == []  # claims nothing
    assert check({"flops": 10.0, "flops_ci": [1.0, None], "estimate": None, "ci": [None, None]}) == []


def test_a_plotted_asymptote_that_was_not_fitted_fails():
    rng = np.random.default_rng(2)
    for _ in range(100):
        doc = study_doc(rng)
        unfitted = [n for n, f in doc["analysis"]["fits"].items() if not f["params"]["identified"]]
        bad = copy.deepcopy(doc)
        # what the old loss-vs-tokens plot did: a "regularized asymptote" at 0.0 with no fit behind it
        bad["plotted"].append(
            {"plot": "loss-vs-tokens.png", "what": "asymptote", "fit": "regularized_N", "value": 0.0}
        )
        assert any("not fitted" in p for p in check(bad))
        if unfitted:  # drawn as if identified, but the document's fit is not
            bad = copy.deepcopy(doc)
            entry = {"plot": "p.png", "what": "asymptote", "fit": unfitted[0], "identified": True}
            bad["plotted"].append(entry | {"value": doc["analysis"]["fits"][unfitted[0]]["params"]["E"]})
            assert any("not identified" in p for p in check(bad))
        if doc["plotted"]:  # drawn somewhere else than its fit
            bad = copy.deepcopy(doc)
            bad["plotted"][0]["value"] += 0.5
            assert any("fit's asymptote is" in p for p in check(bad))


def test_the_scaling_plots_record_only_identified_fits_and_pass_the_check(tmp_path):
    from test_scaling import synthetic_study

    from asymptote import scaling_plots
    from asymptote.scaling_analysis import analyse
    from asymptote.scaling_config import FitConfig

    data = synthetic_study()
    data.sizes = data.sizes[:3]  # 3 sizes: no L(N) law is identified
    analysis = analyse(data, FitConfig(n_boot=50))
    drawn = scaling_plots.plot_loss_vs_params(data, analysis, tmp_path / "a.png")
    drawn += scaling_plots.plot_data_scaling(data, analysis, tmp_path / "b.png")
    drawn += scaling_plots.plot_loss_vs_members(data, analysis, tmp_path / "c.png")
    assert not any(d["fit"] in ("standard_N", "regularized_N", "joint_N") for d in drawn)
    assert any(d["fit"].startswith("ensemble_K/") for d in drawn)  # K = 4: those are identified
    doc = {"analysis": analysis.model_dump(), "plotted": drawn, "figures": analysis.claims}
    assert check(doc) == [], check(doc)


def test_plans_must_rest_on_identified_laws_and_name_what_they_could_not_evaluate():
    rng = np.random.default_rng(3)
    good = plan(rng)
    assert check(good) == []
    assert any("not identified" in p for p in check(good | {"basis_identified": False}))
    silent = {k: v for k, v in good.items() if k != "unevaluated"}
    assert any("does not name the options" in p for p in check(silent))
    assert check(good | {"unevaluated": {"regularized": "x"}})  # its own option, unevaluated
    assert check(good | {"notes": ["regularized_N is not identified: 3 points"]})
    doc = {"analysis": {"fits": {"regularized_N": fit(rng, identified=False)}}, "plan": good}
    assert any("reads regularized_N, which is not identified" in p for p in check(doc))


def test_the_planners_answers_pass_the_check():
    from test_planner import PARAMS, TOKENS, Planner, _rising_standard, study

    for seed in range(3):
        planner = Planner(_rising_standard(study(seed)))
        for fraction in (0.01, 0.3, 0.9):
            answer = planner.recommend(6.0 * TOKENS * 32 * PARAMS.max() * fraction, TOKENS)
            assert check(answer) == [] and check_text("\n".join(answer.lines())) == []
        back = planner.budget_for(planner.predict(float(PARAMS[3])).loss, TOKENS)
        assert check(back) == [] and check_text("\n".join(back.lines())) == []


def test_a_split_is_named_by_its_real_name():
    assert all(report_check.split_name_ok(s) for s in SPLIT_NAMES)
    assert check({"split": "heldout", "loss": 1.0}) != []  # not a split's name
    assert check({"split": "validation/half-b", "test_loss": 1.0}) != []  # half of validation, called test
    assert check({"split": "test", "test_loss": 1.0}) == []
    assert check({"split": {"heldout_fraction": 0.5}}) == []  # a split rule, not a name


def test_rendered_text_holds_every_inline_and_tabled_interval():
    bad = "compute 9.6e+11 FLOPs; predicted test loss 3.1662 [6.1888, 6.4803] (95%, mean of 1 run(s))"
    assert check_text(bad) and check_text(bad.replace("3.1662", "6.3")) == []
    assert check_text("gain +0.0106 [+0.0079, +0.0133], needs 1.2e+12 FLOPs [1e+12, unbounded]") == []
    assert check_text("lr 0.003 [cached]; K = 2 [note]") == []
    table = (
        "| claim | estimate | 95% CI | p_direction |\n|---|---|---|---|\n| a | 0.8 | [0.9, 1.1] | 1.000 |\n"
    )
    assert len(check_text(table)) == 1 and check_text(table.replace("| 0.8 |", "| 1.0 |")) == []
    assert check_text("| fit | asymptote | 95% CI |\n|---|---|---|\n| x | not identified |  |\n") == []


def test_a_rendered_report_and_its_folder_are_checked(tmp_path):
    rng = np.random.default_rng(4)
    study = study_doc(rng)
    study["plotted"].append({"plot": "t.png", "what": "asymptote", "fit": "nope", "value": 0.0})
    files = {"study.json": json.dumps(study).encode(), "x.png": b"\x89PNG"}
    problems = check_report("# r\n\nloss 2.0 [2.5, 3.0]\n", files)
    assert any(p.startswith("report.md line 3") for p in problems)
    assert any(p.startswith("study.json") and "not fitted" in p for p in problems)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "report.md").write_text("# fine\n\nloss 2.7 [2.5, 3.0]\n")
    assert [p.split(" ")[0] for p in check_report_dir(tmp_path)] == ["study.json"]


@pytest.mark.parametrize("shape", ["list", "tuple", "numpy"])
def test_containers_of_any_kind_are_walked(shape):
    bad = {"estimate": 5.0, "ci": [1.0, 2.0]}
    wrap = {"list": [bad], "tuple": (bad,), "numpy": {"x": bad, "arr": np.arange(3)}}[shape]
    assert len(check({"results": wrap})) == 1


def test_a_scaling_analysis_and_its_figures_pass():
    from test_scaling import synthetic_study

    from asymptote.scaling_analysis import analyse, figures
    from asymptote.scaling_config import FitConfig

    for seed in range(3):
        data = synthetic_study(seed)
        analysis = analyse(data, FitConfig(n_boot=200, seed=seed))
        doc = {"analysis": analysis.model_dump(), "figures": figures(data, analysis)}
        assert check(doc) == [], check(doc)


def _rendered_study(tmp_path, n_sizes: int):
    """A scaling report rendered from a synthetic study (as the flow renders it) and stored where
    `asymptote plan` finds it: (markdown, files, store path)."""
    from types import SimpleNamespace

    from test_scaling import synthetic_study

    from asymptote.config import ModelConfig
    from asymptote.reports.scaling import render
    from asymptote.scaling_analysis import analyse
    from asymptote.scaling_config import FitConfig, ScalingStudyConfig
    from asymptote.store import Store, layout

    shapes = [
        ModelConfig(n_layer=1 + i // 2, n_head=2, d_model=24 + 8 * i, d_ff=64 + 16 * i) for i in range(5)
    ]
    config = ScalingStudyConfig(sizes=shapes[:n_sizes], fits=FitConfig(n_boot=200))
    data = synthetic_study()
    data.sizes = data.sizes[:n_sizes]
    for s, label in zip(data.sizes, config.labels, strict=True):
        s.label = label
    data.wd_grid = list(config.search.grid.weight_decay)  # [0.1, 0.8]: every choice at an edge
    analysis = analyse(data, config.fits)
    searches = [
        SimpleNamespace(
            size=label,
            recipe=r,
            budget=config.tokens,
            best={"lr": 1e-2, "weight_decay": wd, "epochs": 2.0},
            loss=3.0,
            certified=True,
            points=4,
        )
        for label in config.labels
        for r, wd in (("standard", 0.1), ("regularized", 0.8))
    ]
    markdown, files = render(config, SimpleNamespace(uri="mem://corpus"), searches, data, analysis)
    store = Store(str(tmp_path))
    with store.writer(layout("report", flow="scaling", key="k"), kind="report") as folder:
        for name, blob in files.items():
            (folder / name).write_bytes(blob)
        (folder / "report.md").write_text(markdown)
    return markdown, files, str(tmp_path)


@pytest.mark.parametrize("n_sizes", [3, 5])
def test_a_rendered_scaling_report_passes_and_plan_prints_estimates_inside_their_intervals(tmp_path, n_sizes):
    """The report as the flow renders it (markdown, plots' drawn values, study.json), then `asymptote
    plan` on its store: with 3 sizes (the demo's) no law is identified and the plan is refused naming
    every option; with 5 it plans, naming what it could not evaluate, every estimate in its interval."""
    from typer.testing import CliRunner

    from asymptote.cli import app

    markdown, files, store = _rendered_study(tmp_path, n_sizes)
    assert check_report(markdown, files) == []
    assert "at grid edge: not identified" in markdown  # the 2-value weight-decay grid
    study = json.loads(files["study.json"])
    laws = [d["fit"] for d in study["plotted"] if d["fit"].endswith("_N")]
    assert (laws == []) if n_sizes == 3 else ("regularized_N" in laws)  # 3 points: no L(N) is drawn
    for flops in ("1e9", "1e11", "3e12"):
        out = CliRunner().invoke(app, ["plan", "--store", store, "--flops", flops, "--extrapolate", "--json"])
        text = " ".join(out.output.split())  # undo the console's wrapping
        assert check_text(out.output) == [] and check_text(text) == [], out.output
        if n_sizes == 3:
            assert out.exit_code == 2 and "no identified law" in text
            assert all(f"{o}: " in text for o in ("standard", "regularized", "ensemble-2"))
        else:
            assert out.exit_code == 0, out.output
            answer = json.loads(out.stdout.strip().splitlines()[-1])
            assert check(answer) == [] and answer["basis_identified"]
            assert "not evaluated: ensemble-5+" in text  # K = 4 measured
