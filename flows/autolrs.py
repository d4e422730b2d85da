"""AutoLRS: find the learning-rate schedule on the fly while training, then keep it as an artifact.

The corpus is tokenised once (cached), then one Ray Train job trains the model with the AutoLRS
driver: in stages, a Bayesian optimiser proposes LRs, short trials from a snapshot forecast where each
leads, and the best trains the stage (asymptote.tuning.autolrs). The job checkpoints after every
trial, so a killed job resumes at the same stage and trial. The schedule it found is committed as
schedules/<run key>/schedule.json (key "lrs": one LR per step) with a plot, and any training config
replays it with `train.schedule=replay` and `train.schedule_file=<its URI>`.
"""

from __future__ import annotations

from typing import Optional

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from asymptote.cli_options import JsonOpt, RecipeOpt, SetOpt, StoreOpt, recompute_opt
from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    PretrainConfig,
    Section,
    StoreConfig,
    TrainConfig,
    volatile,
)
from asymptote.infra.cluster import compute_session
from asymptote.job import TrainJob, make_job
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store
from asymptote.tasks.autolrs import PLOT, ScheduleRef, publish_schedule
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import prepare_data, train
from asymptote.tasks.reports import md_table, publish_report
from asymptote.tuning.autolrs import AutoLRSOptions
from asymptote.tuning.autolrs_tune import AutoLRSSearchConfig, AutoLRSSearchResult, search_with_autolrs

STEPS = ("data", "train", "schedule")


def _tiny_train() -> TrainConfig:
    return TrainConfig(
        max_steps=300,
        batch_size=16,
        warmup_steps=20,
        eval_every=100,
        eval_windows=64,
        log_every=25,
        checkpoint_every=100,
    )


class AutoLRSFlowConfig(Section):
    """One AutoLRS run. The defaults are the main job's tiny scale (a minute on 2 CPU cores)."""

    name: str = volatile("autolrs")
    """Label shown in reports and progress."""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="cpu-0.1m"))
    """Model shape."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus and tokenisation."""
    train: TrainConfig = Field(default_factory=_tiny_train)
    """Optimisation; the run's steps are train.max_steps (or epochs). train.lr and the schedule are
    not used: AutoLRS sets the LR of every step (train.warmup_steps is its default warmup)."""
    autolrs: AutoLRSOptions = Field(default_factory=AutoLRSOptions)
    """The search: range, trials per stage, trial and stage lengths, optimiser backend."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig, json_schema_extra={"volatile": True})
    """Execution (never part of a cache key)."""
    store: StoreConfig = Field(default_factory=StoreConfig, json_schema_extra={"volatile": True})
    """Artifact store (never part of a cache key)."""


class AutoLRSResult(BaseModel):
    """What the flow returns: the run, the schedule artifact and the headline figures."""

    flow_run_id: str | None
    data: DataRef
    run: RunRef
    schedule: ScheduleRef
    val_loss: float
    report_uri: str


def autolrs_job(config: AutoLRSFlowConfig, data_rel: str, hub: str | None = None) -> TrainJob:
    return make_job(
        name=config.name,
        model=config.model,
        data=config.data,
        train=config.train,
        data_artifact=data_rel,
        driver=config.autolrs.model_dump(),
        compute=config.compute,
        store=Store(config.store).cfg,
        progress_hub=hub,
    )


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
def autolrs(config: AutoLRSFlowConfig = AutoLRSFlowConfig(), recompute: list[str] = []) -> AutoLRSResult:  # noqa: B006
    """Prepare data -> train with AutoLRS -> commit the found schedule -> report."""
    check_recompute(recompute, STEPS)
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store, refresh="data" in recompute)
        run = train(autolrs_job(config, data.rel, hub), refresh="train" in recompute)
    schedule = publish_schedule(store, run, refresh="schedule" in recompute)
    markdown = autolrs_markdown(config, run, schedule, store)
    report = publish_report(store, "autolrs", run.key, markdown, {PLOT: store.read(schedule.rel, PLOT)})
    return AutoLRSResult(
        flow_run_id=flow_run.id,
        data=data,
        run=run,
        schedule=schedule,
        val_loss=run.val_loss,
        report_uri=report,
    )


@flow(name="autolrs-search", log_prints=True)
def autolrs_search(config: AutoLRSSearchConfig = AutoLRSSearchConfig()) -> AutoLRSSearchResult:
    """A Ray Tune weight-decay search with AutoLRS as the schedule in every trial (tuning.autolrs_tune)."""
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


def main_step(config: AutoLRSFlowConfig):
    """The main job's AutoLRS step at the recipe's tiny default scale."""
    from asymptote.flows.main import StepOutcome

    res = autolrs(config)
    store = Store(config.store)
    markdown = autolrs_markdown(config, res.run, res.schedule, store, plot="autolrs-schedule.png")
    return StepOutcome(
        markdown=markdown.replace("# AutoLRS", "## AutoLRS", 1),
        figures=figures(res),
        files={"autolrs-schedule.png": store.read(res.schedule.rel, PLOT)},
        result=res,
    )


def cli(
    recipe: Optional[str] = RecipeOpt,
    set_: list[str] = SetOpt,
    as_json: bool = JsonOpt,
    store: Optional[str] = StoreOpt,
    recompute: list[str] = recompute_opt(STEPS),
) -> None:
    """Train with AutoLRS (the LR schedule found on the fly by Bayesian optimisation); keep the schedule."""
    from asymptote.cli import _config, _finish, _quiet_prefect

    _quiet_prefect()
    cfg = _config(AutoLRSFlowConfig, recipe, set_, store)
    res = autolrs(cfg, recompute=recompute)
    f = figures(res)
    _finish(
        res.model_dump() | f,
        as_json,
        [
            f"[green]done[/green]. val_loss {res.val_loss:.4f} after {f['steps']} steps + {f['trial_steps']} trial steps; "
            f"chosen LRs {', '.join(f'{x:.3g}' for x in f['chosen_lrs'])}",
            f"schedule {res.schedule.uri} (replay: --set train.schedule=replay --set train.schedule_file=<that URI>)",
            f"report {res.report_uri}",
        ],
    )
