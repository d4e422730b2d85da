"""AutoLRS: find the learning-rate schedule on the fly while training, then keep it as an artifact.

The corpus is tokenised once (cached), then one Ray Train job trains the model with the AutoLRS
driver: in stages, a Bayesian optimiser proposes LRs, short trials from a snapshot forecast where each
leads, and the best trains the stage (asymptote.autolrs). The job checkpoints after every
trial, so a killed job resumes at the same stage and trial. The schedule it found is committed as
schedules/<run key>/schedule.json (key "lrs": one LR per step) with a plot, and any training config
replays it with `train.schedule=replay` and `train.schedule_file=<its URI>`.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from asymptote import preflight
from asymptote.autolrs_config import (
    AutoLRSFlowConfig,
    AutoLRSResult,
    AutoLRSSearchConfig,
    AutoLRSSearchResult,
)
from asymptote.autolrs_job import autolrs_job
from asymptote.config import PretrainConfig
from asymptote.flows.registry import METHODS
from asymptote.flows.reporting import method_report, publish_report, publish_results
from asymptote.infra.cluster import compute_session
from asymptote.store import Store
from asymptote.tasks.autolrs import publish_schedule
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import evaluate, prepare_data, train
from asymptote.tuning.autolrs_tune import search_with_autolrs

STEPS = METHODS["autolrs"].steps


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
        metrics = evaluate(store, run, data)  # validation and test figures of the final weights
    schedule = publish_schedule(store, run, refresh="schedule" in recompute)
    result = AutoLRSResult(
        flow_run_id=flow_run.id,
        data=data,
        run=run,
        schedule=schedule,
        val_loss=run.val_loss,
        metrics=metrics,
        report_uri="",
    )
    rendered = method_report("autolrs", config, result, store)
    result.report_uri = publish_report(store, "autolrs", run.key, rendered.markdown, rendered.files)
    publish_results("autolrs", config, result, store, result.report_uri)
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
    publish_results("autolrs-search", config, result, Store(base.store), None)
    return result.model_copy(update={"flow_run_id": flow_run.id})
