"""The AutoLRS flow end to end on real local Ray and a real Prefect API: find, commit, replay, report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from asymptote.autolrs_config import AutoLRSFlowConfig
from asymptote.flows.learning_rates import autolrs, replay_config
from asymptote.flows.pretraining import pretrain
from asymptote.reports.autolrs import report, summary


def _tiny(store_uri: str) -> AutoLRSFlowConfig:
    return AutoLRSFlowConfig.model_validate(
        {
            "name": "tiny-autolrs",
            "model": {"preset": "cpu-0.1m"},
            "data": {"max_train_tokens": 50_000},
            "train": {
                "max_steps": 60,
                "batch_size": 8,
                "warmup_steps": 4,
                "eval_every": 30,
                "eval_windows": 16,
                "log_every": 10,
                "checkpoint_every": 30,
            },
            "autolrs": {
                "trials": 2,
                "trial_steps": 6,
                "stage_steps": 25,
                "max_stage_steps": 400,
                "backend": "optuna_tpe",
            },
            "store": {"uri": store_uri},
        }
    )


@pytest.mark.slow
def test_flow_finds_commits_and_replays_the_schedule(ray_local, prefect_api, store_uri, store):
    cfg = _tiny(store_uri)
    res = autolrs(cfg)
    doc = store.read_json(res.schedule.rel, "schedule.json")
    assert len(doc["lrs"]) == res.run.summary["steps"] == res.schedule.steps == 60
    searched = [s for s in doc["stages"] if s["end_lr"] is None]  # the last 20% is the final decay
    assert doc["chosen_lrs"] == [s["lr"] for s in searched] == res.schedule.chosen_lrs
    assert doc["decay"] == {
        "start_step": 48,
        "from_lr": searched[-1]["lr"],
        "to_lr": 0.1 * searched[-1]["lr"],
    }
    assert len(doc["stages"][0]["trials"]) == 2 and res.schedule.trial_steps == 2 * 6 + 2 * 12
    assert {"schedule.json", "schedule.png"} <= set(store.manifest(res.schedule.rel).files)
    assert res.val_loss == doc["final_val_loss"] < 5.0
    assert 0 < res.metrics["test_loss"] < 5.0 and "test_loss" in summary(res)[1]  # reported on test

    # Replayed as a fixed schedule in an ordinary training config, it retraces the AutoLRS run exactly:
    # trials restored data position, optimizer state and RNG, so only the chosen steps left a mark.
    replay = pretrain(replay_config(cfg, res.schedule.uri))
    assert replay.run.key != res.run.key and replay.run.summary["val_loss"] == res.val_loss

    again = autolrs(cfg)  # cached run, quick
    assert again.run.key == res.run.key
    section = report(cfg, again, store, level=2, prefix="autolrs-")  # as the main report shows it
    assert section.markdown.startswith("## AutoLRS") and "](autolrs-schedule.png)" in section.markdown
    assert section.files["autolrs-schedule.png"][:4] == b"\x89PNG"
    assert section.figures["steps"] == 60 and section.figures["schedule_uri"] == res.schedule.uri


def test_cli_refuses_a_bad_option_naming_the_field(store_uri):
    from asymptote.cli import app

    out = CliRunner().invoke(app, ["autolrs", "--store", store_uri, "--set", "autolrs.trials=1"])
    assert out.exit_code == 2 and "autolrs.trials" in out.output


VARIANTS = {
    "range_rule": "step_law",
    "range_factor": 7.0,
    "spike_guard": "reference",
    "denoiser": "reference",
    "backend": "optuna_gp",
    "kappa": 2.5,
    "trials": 4,
    "trial_steps": 8,
    "stage_steps": 50,
    "max_stage_steps": 200,
    "decay_fraction": 0.3,
    "decay_floor": 0.05,
    "warmup_lr": 0.02,
}


def test_every_variant_is_a_set_override_that_reaches_the_controller(store_uri):
    """The command line's own parsing (recipe + --set, validated and checked, no training): each
    AutoLRS variant field arrives in the driver's options and in the controller it starts."""
    from asymptote.autolrs import AutoLRS, search_range
    from asymptote.autolrs_driver import autolrs_options
    from asymptote.autolrs_job import autolrs_job
    from asymptote.cli import _config
    from asymptote.flows.registry import METHODS

    method = METHODS["autolrs"]
    sets = [f"autolrs.{k}={v}" for k, v in VARIANTS.items()] + ["train.lr=0.004"]
    cfg = _config(method.config, "autolrs-tiny", sets, store_uri)
    options = autolrs_options(autolrs_job(cfg, "datasets/any"))
    assert {k: getattr(options, k) for k in VARIANTS} == VARIANTS
    ctl = AutoLRS.start(options, search_range(options, cfg.train.lr, 10**5, 10**6), cfg.train.lr)
    assert ctl.options == options and ctl.state.lr == 0.004 and ctl.warmup_lr == 0.02

    user = _config(method.config, "autolrs-tiny", ["train.lr=0.004", "autolrs.range_factor=4"], store_uri)
    opts = autolrs_options(autolrs_job(user, "datasets/any"))
    assert search_range(opts, user.train.lr, 10**5, 10**6) == pytest.approx((0.001, 0.016))
    sets = ["autolrs.min_lr=1e-4", "autolrs.max_lr=0.05"]
    explicit = autolrs_options(autolrs_job(_config(method.config, "autolrs-tiny", sets, store_uri), "d"))
    assert search_range(explicit, 0.004, 10**5, 10**6) == (1e-4, 0.05)


@pytest.mark.slow
def test_cli_runs_a_recipe_and_prints_json_last(ray_local, prefect_api, store_uri):
    from asymptote.cli import app

    sets = [
        "data.max_train_tokens=50000",
        "train.max_steps=40",
        "train.batch_size=8",
        "train.eval_windows=16",
        "autolrs.trials=2",
        "autolrs.trial_steps=6",
        "autolrs.stage_steps=25",
        "autolrs.backend=optuna_tpe",
    ]
    out = CliRunner().invoke(
        app,
        [
            "autolrs",
            "-r",
            "autolrs-tiny",
            "--store",
            store_uri,
            "--json",
            *[a for s in sets for a in ("--set", s)],
        ],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 40 and summary["schedule_uri"].endswith("schedule.json")


@pytest.mark.slow
def test_tune_search_with_autolrs_inside_every_trial(ray_local, prefect_api, store_uri, store):
    from asymptote.autolrs_config import TRACE, AutoLRSSearchConfig, trace_rel
    from asymptote.flows.learning_rates import autolrs_search

    base = _tiny(store_uri).model_dump(mode="json")
    base["train"]["max_steps"] = 40
    cfg = AutoLRSSearchConfig(base=base, weight_decay=(1e-3, 1.0), samples=2, sampler="optuna")
    out = autolrs_search(cfg)
    assert len(out.results) == 2 and out.best == min(out.results, key=lambda r: r["loss"])
    assert all(1e-3 <= r["weight_decay"] <= 1.0 for r in out.results)
    assert len({r["run"] for r in out.results}) == 2
    for r in out.results:  # every trial trained with AutoLRS and kept its trace
        assert len(store.read_json(trace_rel(r["run"]), TRACE)["state"]["lrs"]) == 40
    assert autolrs_search(cfg).results == out.results  # committed: the rerun trains nothing


def test_search_config_refuses_a_bad_base_or_range(store_uri):
    from asymptote.autolrs_config import AutoLRSSearchConfig

    with pytest.raises(ValueError, match="autolrs.trials"):
        AutoLRSSearchConfig(base={"autolrs": {"trials": 1}, "store": {"uri": store_uri}})
    with pytest.raises(ValueError, match="0 < low < high"):
        AutoLRSSearchConfig(base={"store": {"uri": store_uri}}, weight_decay=(0.5, 0.1))
