"""The soups report names every split by its real name and says what its intervals resampled."""

from __future__ import annotations

import numpy as np

from asymptote.refs import DataRef
from asymptote.report_check import check, check_report
from asymptote.reports.soups import report, summary, table
from asymptote.soups_config import SoupEntry, SoupStudyConfig, SoupStudyResult
from asymptote.soups_gains import gain_over


def result(split: str, ood_split: str | None) -> SoupStudyResult:
    rng = np.random.default_rng(0)
    windows = {n: rng.normal(2.0, 0.2, 64) + shift for n, shift in (("ft-a", 0.0), ("ft-b", 0.01))}
    greedy = windows["ft-a"] - 0.02
    ood = rng.normal(3.0, 0.2, 32) if ood_split else None

    def entry(name, kind, w, **extra):
        return SoupEntry(
            name=name, kind=kind, heldout=float(w.mean()) + 0.1, test=float(w.mean()), rel=name,
            ood_test=None if ood is None else float(ood.mean()), **extra,
        )  # fmt: skip

    gains = {"gain": gain_over([windows["ft-a"]], [greedy], n_boot=200)}
    if ood is not None:
        gains["ood_gain"] = gain_over([ood], [ood - 0.01], n_boot=200)
    entries = [entry(n, "ingredient", w) for n, w in windows.items()]
    entries.append(entry("greedy", "soup", greedy, weights={"ft-a": 1.0, "ft-b": 0.0}, **gains))
    data = DataRef(rel="data/x", uri="file:///data/x", n_train=1, n_val=1, source_sha256="0")
    return SoupStudyResult(
        flow_run_id=None, data=data, base=None, finetunes=[], entries=entries, report_uri="",
        split=split, ood_split=ood_split,
    )  # fmt: skip


def test_report_on_the_test_split_says_so_and_what_was_resampled(store):
    res = result("test", "test")
    markdown = report(SoupStudyConfig(), res, store).markdown
    assert "Figures are on the target's test split" in markdown
    assert "64 test windows of one model per arm (no seed noise)" in markdown
    assert "p_direction=" in markdown and " p=" not in markdown and "| test gain |" in markdown
    assert "| OOD test gain |" in markdown
    assert table(res)[-1]["p_direction"] == 1.0 and "p" not in table(res)[-1]


def test_without_a_test_split_no_figure_is_called_test(store):
    res = result("validation (not held-out)", "validation")
    markdown = report(SoupStudyConfig(), res, store).markdown
    assert "has no test split" in markdown
    assert "| validation (not held-out) gain |" in markdown and "| OOD validation gain |" in markdown
    assert "| test gain |" not in markdown and "| test |" not in markdown
    assert table(res)[0]["split"] == "validation (not held-out)"


def test_report_and_figures_pass_the_report_check(store):
    for res in (
        result("test", "test"),
        result("validation (not held-out)", "validation"),
        result("test", None),
    ):
        rendered = report(SoupStudyConfig(), res, store)
        assert check_report(rendered.markdown) == [], res.split
        assert check({"result": res, "table": table(res), "summary": summary(res)[0]}) == [], res.split
