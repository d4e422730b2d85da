"""The CLI and the registries agree; config errors exit with a message before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asymptote.cli import app
from asymptote.config import load
from asymptote.flows.registry import METHODS
from asymptote.presets import PRESETS
from asymptote.schedules import SCHEDULES

runner = CliRunner()


def test_every_registered_method_is_a_command():
    out = runner.invoke(app, ["--help"]).output
    for name in [*METHODS, "run", "presets", "recipes", "store", "serve", "export"]:
        assert name in out, name


def test_every_registry_entry_resolves():
    for method in METHODS.values():
        targets = [method.flow, method.config, method.result, method.report, method.summary]
        for target in [*targets, *([method.inputs] if method.inputs else [])]:
            assert callable(load(target)), target
        help_text = runner.invoke(app, [method.name, "--help"]).output
        assert ("--recompute" in help_text) == bool(method.steps), method.name


def _imported_by(code: str) -> set[str]:
    """Which of the heavy libraries a fresh interpreter has imported after running `code`."""
    probe = (
        f"{code}\nimport sys; print(' '.join(m for m in ('torch', 'ray', 'matplotlib') if m in sys.modules))"
    )
    return set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )


def test_help_and_the_flows_import_neither_torch_nor_ray():
    """A fully cached call never needs torch, Ray or matplotlib: importing the CLI and every method's
    flow must not pay for them (seconds each on a small machine); the steps that run import them."""
    assert _imported_by("import asymptote.cli") == set()
    flows = sorted({m.flow.split(":")[0] for m in METHODS.values()} | {"asymptote.flows.main"})
    assert _imported_by("\n".join(f"import {f}" for f in flows)) == set()


def test_presets_command_lists_the_registry():
    out = runner.invoke(app, ["presets"]).output
    assert all(name in out for name in PRESETS)


def test_config_error_exits_2_naming_the_field():
    res = runner.invoke(app, ["pretrain", "--set", "train.schedule=stepwise"])
    assert res.exit_code == 2
    assert "train.schedule" in res.output and all(s in res.output for s in SCHEDULES)


def test_unknown_main_step_is_refused():
    res = runner.invoke(app, ["run", "--set", "steps=[pretrain, nope]"])
    assert res.exit_code == 2 and "steps=['nope']: unknown; allowed: pretrain, scaling" in res.output


def test_plain_progress_lines_show_step_loss_speed_and_eta(monkeypatch):
    """Where stderr is not a terminal (CI, deployments), each run gets a plain line every 10 s with an ETA."""
    import io
    import types

    from rich.console import Console

    from asymptote.infra import progress

    now = [1000.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(time=lambda: now[0]))
    out = io.StringIO()
    display = progress._Display(Console(file=out, width=200))
    record = {"label": "baby", "total_steps": 600, "train_loss": 2.5, "tok_per_s": 8000.0}
    for t, step in [(0, 100), (5, 150), (12, 220)]:  # 120 steps in 12 s: 380 left take 38 s
        now[0] = 1000.0 + t
        display.draw({"run": {**record, "step": step}})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("baby: step 100/600  loss 2.500  8.0k tok/s")
    assert len(lines) == 2 and lines[1].startswith("baby: step 220/600") and lines[1].endswith("ETA 0:38")


@pytest.mark.slow
def test_a_fully_cached_call_answers_without_ray(tmp_path):
    """The second identical `asymptote pretrain` is answered from the store: it runs even where no
    Ray can be reached (RAY_ADDRESS points at a closed port), because no step needs Ray."""
    cli = [str(Path(sys.executable).with_name("asymptote")), "pretrain", "--store", str(tmp_path), "--json"]
    cli += ["--set", "model.preset=cpu-0.1m", "--set", "train.max_steps=10", "--set", "train.eval_every=10"]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    env = os.environ | {"RAY_ADDRESS": "127.0.0.1:9"}  # nothing listens there
    second = subprocess.run(cli, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    one, two = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (first, second))
    assert two["run"] == one["run"] and set(two["step_states"].values()) == {"Cached"}
