"""The README's results table is the one bench/results/*.json renders (bench/render_results.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import render_results  # noqa: E402  (a script of bench/, not a package)


def test_readme_table_is_the_rendered_one():
    readme = (ROOT / "README.md").read_text()
    assert readme == render_results.render(readme), "run: python bench/render_results.py"


def test_every_result_file_has_its_line_and_nothing_else_does():
    files = sorted(render_results.RESULTS.glob("*.json"))
    rows = render_results.rows()
    assert len(rows) == len(files)
    for path, row in zip(files, rows, strict=True):
        record = json.loads(path.read_text())
        assert row.startswith(f"| {record['bench']} |") and f"(bench/results/{path.name})" in row
        assert {"commit", "date", "machine", "protocol", "result"} <= set(record)


def test_a_figure_without_a_file_is_not_in_the_table(tmp_path):
    assert render_results.table(tmp_path).startswith("No result files yet")
    record = {
        "bench": "startup",
        "corpus": "python-docs",
        "machine": {"cores": 2, "gpu": None},
        "command": "python bench/startup.py --data builtin:python-docs",
        "result": {"help_s": 0.5, "config_error_s": 0.6, "cached_call_s": 4.0, "torch_import_s": 2.0},
    }
    (tmp_path / "startup-python-docs.json").write_text(json.dumps(record))
    rendered = render_results.render(f"a\n{render_results.START}\nstale\n{render_results.END}\nb\n", tmp_path)
    assert "stale" not in rendered and "`asymptote --help` 0.50 s" in rendered and "2 CPU cores" in rendered
    assert "`python bench/startup.py --data builtin:python-docs`" in rendered  # the command reproduces it
    (tmp_path / "soups-x.json").write_text(json.dumps({**record, "bench": "nope"}))
    with pytest.raises(SystemExit, match="no headline"):
        render_results.table(tmp_path)


def test_save_writes_the_line_with_where_and_how_it_was_measured(tmp_path, monkeypatch):
    import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    script = ROOT / "bench" / "startup.py"
    argv = [str(script), "--data", "builtin:python-docs", "--save", "--store", "/tmp/x", "--repeat", "3"]
    path = common.save_result({"help_s": 0.5}, "builtin:python-docs", argv)
    record = json.loads(path.read_text())
    assert path.name == "startup-python-docs.json" and record["result"] == {"help_s": 0.5}
    assert record["machine"]["cores"] >= 1 and record["commit"] and record["date"].endswith("Z")
    other_place = [str(script), "--data", "other.txt", "--store=/elsewhere", "--repeat", "3"]
    assert record["protocol"] == common.protocol_hash(script, other_place[1:])
    assert record["protocol"] != common.protocol_hash(script, ["--repeat", "5"])


def _fig(estimate, lo, hi):
    return {"estimate": estimate, "ci": [lo, hi], "p_direction": 1.0}


def test_protocol_benches_headlines_read_their_json_lines():
    distill = {
        "paper_method": "sequence",
        "extensions": ["token_kl", "combined"],
        "members": 4,
        "resampled": "3 seeds per arm, then 800 test windows",
        "single": _fig(2.0, 1.9, 2.1),
        "ensemble": _fig(1.8, 1.7, 1.9),
        "students": {m: _fig(1.9, 1.85, 1.95) for m in ("sequence", "token_kl", "combined")},
        "retained": {"sequence": _fig(0.5, 0.3, 0.7), "token_kl": _fig(0.6, 0.4, 0.8), "combined": None},
        "control": _fig(2.7, 2.6, 2.8),
    }
    figure, interval = render_results.HEADLINES["distill"](distill)
    assert "paper's (sequence-level) student keeps 50%" in figure and "token_kl keeps 60%" in figure
    assert "no-teacher control 2.7000" in figure
    assert interval.startswith("30% to 70%") and "3 seeds" in interval
    autolrs = {
        "seeds": 3,
        "grid": _fig(1.85, 1.83, 1.87) | {"resampled": "3 seeds per arm, then 1742 test windows"},
        "grid_total_steps": 10000,
        "misset": {"x0.1": _fig(2.5, 2.4, 2.6), "x10": _fig(2.1, 2.0, 2.2)},
        "autolrs_from_misset": {
            "x0.1": _fig(1.84, 1.80, 1.88) | {"total_steps": 3500.0},
            "x10": _fig(1.97, 1.9, 2.0) | {"total_steps": 3500.0},
        },
    }
    figure, interval = render_results.HEADLINES["autolrs"](autolrs)
    assert "from a x0.1 guess 1.840 in 3,500 steps (cosine at that guess 2.500)" in figure
    assert "10,000 steps" in figure and "x10 [1.900, 2.000]" in interval and "grid [1.830, 1.870]" in interval


def test_the_command_column_drops_where_a_run_kept_its_store():
    recorded = "python bench/distill.py --data corpus.txt --store /work/runs/x --save --seed-offset 3"
    assert render_results.reproduce(recorded) == "python bench/distill.py --data corpus.txt --seed-offset 3"
    assert (
        render_results.reproduce("python bench/a.py --store=s3://b/x --data d")
        == "python bench/a.py --data d"
    )


def test_the_data_efficiency_headline_reads_its_json_line():
    line = {
        "fraction": 0.25,
        "unique_train_tokens": 225867,
        "split": "nanogpt_val",
        "nanogpt_loss": 1.886,
        "resampled": "3-4 seeds per arm, then 1700 test windows",
        "standard": _fig(1.99, 1.97, 2.01),
        "single": _fig(1.90, 1.88, 1.92),
        "ensemble": _fig(1.85, 1.83, 1.87),
        "student": _fig(1.87, 1.85, 1.89),
        "data_multiplier": {"student": {"estimate": 4.2, "ci": [2.5, None], "reachable": True}},
    }
    figure, interval = render_results.HEADLINES["data_efficiency"](line)
    assert "from 25% of the training text (225,867 tokens), the paper's student 1.870" in figure
    assert "data multiplier 4.20x" in figure and "multiplier [2.50, unbounded]" in interval
    line["data_multiplier"]["student"] = {
        "estimate": None,
        "ci": [None, None],
        "reachable": False,
        "reason": "below E",
    }
    figure, interval = render_results.HEADLINES["data_efficiency"](line)
    assert "beyond the standard recipe's reach" in figure and "(below E)" in interval


def test_the_soups_headline_names_greedy_and_the_other_soups():
    gain = {"resampled": "3 seeds per arm, then 435 test windows", "p_direction": 0.8}
    line = {
        "bases": 3,
        "split": "test",
        "greedy_gain": _fig(0.005, -0.006, 0.014) | gain,
        "gain_over_best": {
            "greedy": _fig(0.005, -0.006, 0.014),
            "uniform": _fig(0.013, 0.006, 0.022),
            "ties": _fig(-0.014, -0.036, 0.003),
        },
    }
    figure, interval = render_results.HEADLINES["soups"](line)
    assert "pooled over 3 bases: +0.0050" in figure and "uniform +0.0130 [+0.0060, +0.0220]" in figure
    assert "ties" not in figure and interval.startswith("-0.0060 to +0.0140")
