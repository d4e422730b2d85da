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
from asymptote.cli_config import BOOKKEEPING, DEFAULTS
from asymptote.config import load
from asymptote.flows.registry import METHODS
from asymptote.presets import PRESETS
from asymptote.recipes import recipe_names, resolve
from asymptote.schedules import SCHEDULES

runner = CliRunner()


def test_every_registered_method_is_a_command():
    out = runner.invoke(app, ["--help"]).output
    for name in [*METHODS, "run", "presets", "recipes", "store", "serve", "export"]:
        assert name in out, name


def test_every_registry_entry_resolves():
    for method in METHODS.values():
        targets = [method.flow, method.config, method.result, method.report, method.summary, method.table]
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


def test_run_takes_the_recipe_as_an_option_or_an_argument():
    for args in (["run", "-r", "main"], ["run", "main"], ["run", "--recipe", "main"]):
        res = runner.invoke(app, [*args, "--set", "steps=[pretrain, nope]"])
        assert res.exit_code == 2 and "steps=['nope']: unknown" in res.output, args
    res = runner.invoke(app, ["run", "-r", "no-such-recipe"])
    assert res.exit_code == 2 and "recipe 'no-such-recipe' not found" in res.output
    assert runner.invoke(app, ["run", "main", "-r", "pretrain"]).exit_code == 2


def test_each_command_names_what_it_runs_without_a_recipe():
    assert set(DEFAULTS) == {"run", *METHODS}
    for method in METHODS.values():
        help_text = " ".join(runner.invoke(app, [method.name, "--help"]).output.split())
        assert "Without -r:" in help_text and f"recipe `{method.recipe}`" in help_text, method.name
    assert "Default recipe `main`" in " ".join(runner.invoke(app, ["run", "--help"]).output.split())


def _learning_settings(cfg) -> dict:
    """A config's fields without the bookkeeping ones (names, log and checkpoint intervals)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in BOOKKEEPING}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(cfg.model_dump())


def test_a_recipe_the_help_calls_the_default_is_the_default():
    for name, default in DEFAULTS.items():
        if default.same_as:
            cls = load(METHODS[name].config)
            assert _learning_settings(resolve(cls, None)) == _learning_settings(resolve(cls, default.same_as))


def test_recipes_prints_a_description_per_recipe():
    lines = runner.invoke(app, ["recipes"]).output.splitlines()
    assert [line.split()[0] for line in lines] == recipe_names()
    assert all(len(line.split(None, 1)[1]) > 20 and len(line) <= 80 for line in lines)


def test_config_explain_prints_each_fields_docstring():
    res = runner.invoke(app, ["config", "explain", "train"])
    assert res.exit_code == 0
    assert "lr: float = 0.001" in res.output and "    Peak learning rate." in res.output
    assert "    Linear warmup steps." in res.output
    assert runner.invoke(app, ["config", "explain", "scaling.search"]).exit_code == 0
    bad = runner.invoke(app, ["config", "explain", "nope"])
    assert bad.exit_code == 2 and "known:" in bad.output and "train" in bad.output


def test_presets_explain_the_paper_names():
    out = runner.invoke(app, ["presets"]).output
    assert "22.944M" in out and "128K" in out


def test_plain_progress_lines_fit_80_columns():
    from asymptote.infra.progress import plain_line

    tail = "step 12000/12000  loss 2.500  val 2.400  123.4k tok/s  ETA 12:34"
    line = plain_line("scaling/cpu-0.1m/regularized/lr3e-3-wd0.8-ep16/member-3", tail)
    assert len(line) <= 80 and line.startswith("scaling") and line.endswith(tail)
    assert plain_line("baby", "step 1/2") == "baby: step 1/2"


@pytest.mark.slow
def test_rays_start_up_line_shows_only_when_verbose():
    code = (
        "import sys\nfrom asymptote.infra import cluster\ncluster.VERBOSE = sys.argv[1] == '1'\n"
        "with cluster.ray_session(num_cpus=1):\n    pass\n"
    )
    out = {
        v: subprocess.run([sys.executable, "-c", code, v], capture_output=True, text=True, timeout=300)
        for v in ("0", "1")
    }
    assert "Started a local Ray instance" not in out["0"].stderr + out["0"].stdout
    assert "Started a local Ray instance" in out["1"].stderr + out["1"].stdout
