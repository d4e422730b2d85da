"""AutoLRS: find the learning-rate schedule on the fly while training, then keep it as an artifact.

The corpus is tokenised once (cached), then one Ray Train job trains the model with the AutoLRS
driver: in stages, a Bayesian optimiser proposes LRs, short trials from a snapshot forecast where each
leads, and the best trains the stage (asymptote.tuning.autolrs). The job checkpoints after every
trial, so a killed job resumes at the same stage and trial. The schedule it found is committed as
schedules/<run key>/schedule.json (key "lrs": one LR per step) with a plot, and any training config
replays it with `train.schedule=replay` and `train.schedule_file=<its URI>`.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import methods, preflight
from asymptote.autolrs_config import AutoLRSFlowConfig, AutoLRSSearchConfig
from asymptote.config import (
    PretrainConfig,
)
from asymptote.infra.cluster import compute_session
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store
from asymptote.tasks.autolrs import PLOT, ScheduleRef, publish_schedule
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import prepare_data, train
from asymptote.tasks.reports import Report, md_table, method_report, publish_report, shift_headings
from asymptote.tuning.autolrs_job import autolrs_job
from asymptote.tuning.autolrs_tune import AutoLRSSearchResult, search_with_autolrs

STEPS = methods.METHODS["autolrs"].steps


class AutoLRSResult(BaseModel):
    """What the flow returns: the run, the schedule artifact and the headline figures."""

    flow_run_id: str | None
    data: DataRef
    run: RunRef
    schedule: ScheduleRef
    val_loss: float
    report_uri: str


def replay_config(config: AutoLRSFlowConfig, schedule_uri: str, name: str = "replay") -> PretrainConfig:
    """A pretrain config that plays the found schedule back step by step on the same model and data."""
    train = config.train.model_copy(update={"schedule": "replay", "schedule_file": schedule_uri})
    return PretrainConfig(
        name=name,
        model=config.model,
        data=config.data,
        train=train,
        compute=config.compute,
        store=config.store,
    )


@flow(name="autolrs", log_prints=True)
def autolrs(config: AutoLRSFlowConfig | None = None, recompute: list[str] | None = None) -> AutoLRSResult:
    """Prepare data -> train with AutoLRS -> commit the found schedule -> report."""
    config = config or AutoLRSFlowConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store, refresh="data" in recompute)
        run = train(autolrs_job(config, data.rel, hub), refresh="train" in recompute)
    schedule = publish_schedule(store, run, refresh="schedule" in recompute)
    result = AutoLRSResult(
        flow_run_id=flow_run.id, data=data, run=run, schedule=schedule, val_loss=run.val_loss, report_uri=""
    )
    rendered = method_report("autolrs", config, result, store)
    result.report_uri = publish_report(store, "autolrs", run.key, rendered.markdown, rendered.files)
    return result


@flow(name="autolrs-search", log_prints=True)
def autolrs_search(config: AutoLRSSearchConfig | None = None) -> AutoLRSSearchResult:
    """A Ray Tune weight-decay search with AutoLRS as the schedule in every trial (tuning.autolrs_tune)."""
    config = config or AutoLRSSearchConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    base = config.flow_config()
    with compute_session(base.compute.ray_address):
        data = prepare_data(base.data, Store(base.store))
        result = search_with_autolrs(config, data.rel)
    return result.model_copy(update={"flow_run_id": flow_run.id})


def autolrs_markdown(
    config: AutoLRSFlowConfig, run: RunRef, schedule: ScheduleRef, store: Store, plot: str = PLOT
) -> str:
    doc = store.read_json(schedule.rel, "schedule.json")
    rows = [
        {
            "stage": s["index"],
            "start": s["start_step"],
            "steps": s["steps"],
            "trial steps": s["trial_steps"],
            "scored on": s["scored_on"],
            "tried": len(s["trials"]),
            "chosen lr": f"{s['lr']:.3g}",
            "best forecast": min((t["forecast"] for t in s["trials"]), default=float("nan")),
        }
        for s in doc["stages"]
    ]
    lo, hi = doc["search_range"]
    overhead = schedule.trial_steps / max(1, schedule.steps)
    return (
        f"# AutoLRS: {config.name}\n\n"
        f"{config.model.preset or 'custom'} model, {schedule.steps} steps at the found schedule plus "
        f"{schedule.trial_steps} trial steps ({overhead:.0%} search overhead); final validation loss "
        f"**{run.val_loss:.4f}**. LRs searched in [{lo:.3g}, {hi:.3g}] with `{config.autolrs.backend}`, "
        f"{config.autolrs.trials} trials per stage.\n\n{md_table(rows)}\n\n"
        f"- run: `{run.uri}`\n- schedule: `{schedule.uri}` (replay it: `--set train.schedule=replay "
        f"--set train.schedule_file={schedule.uri}`)\n\n![AutoLRS schedule]({plot})\n"
    )


def report(
    config: AutoLRSFlowConfig, result: AutoLRSResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    plot = f"{prefix}{PLOT}"
    markdown = autolrs_markdown(config, result.run, result.schedule, store, plot=plot)
    files = {plot: store.read(result.schedule.rel, PLOT)}
    return Report(shift_headings(markdown, level - 1), files, figures(result))


def summary(result: AutoLRSResult) -> tuple[dict, str]:
    f = figures(result)
    lrs = ", ".join(f"{x:.3g}" for x in f["chosen_lrs"])
    line = (
        f"val_loss {result.val_loss:.4f} after {f['steps']} steps + {f['trial_steps']} trial steps; chosen LRs "
        f"{lrs}; schedule {f['schedule_uri']} (replay: --set train.schedule=replay --set train.schedule_file=URI)"
    )
    return f, line


def figures(res: AutoLRSResult) -> dict:
    s = res.schedule
    return {
        "val_loss": res.val_loss,
        "steps": s.steps,
        "trial_steps": s.trial_steps,
        "search_overhead": s.trial_steps / max(1, s.steps),
        "chosen_lrs": s.chosen_lrs,
        "schedule_uri": s.uri,
        "run_uri": res.run.uri,
    }
