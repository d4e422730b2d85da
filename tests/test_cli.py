"""The CLI and the registries agree; config errors exit with a message before anything runs."""

from __future__ import annotations

import importlib

from typer.testing import CliRunner

from asymptote.cli import COMMANDS, app
from asymptote.flows.main import STEPS
from asymptote.presets import PRESETS
from asymptote.schedules import SCHEDULES

runner = CliRunner()


def test_every_registered_command_is_on_the_cli():
    out = runner.invoke(app, ["--help"]).output
    for name in [*COMMANDS, "run", "pretrain", "presets", "recipes", "store"]:
        assert name in out, name


def test_every_main_step_resolves_and_has_a_command():
    for name, (config_cls, step_fn) in STEPS.items():
        for target in (config_cls, step_fn):
            module, attr = target.split(":")
            assert callable(getattr(importlib.import_module(module), attr)), target
    method_modules = {t.split(":")[0] for t in COMMANDS.values()}
    assert {STEPS[s][1].split(":")[0] for s in STEPS if s != "pretrain"} <= method_modules


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
