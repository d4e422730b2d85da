"""AutoLRS inside a Ray Tune search: tune what the LR schedule cannot find, let AutoLRS find the schedule.

A search over learning rate and weight decay spends most of its trials on the LR axis. With AutoLRS as
the schedule inside every trial, the LR leaves the search space: Tune (Optuna's TPE through
`OptunaSearch`, or random sampling) only proposes weight decay, and each trial trains one TrainJob
with the autolrs driver through `infra.launch` (a Ray task, or a Ray Train worker group for several
workers). Each trial's run is the content-addressed runs/<key> artifact, so a repeated point or a
rerun search trains nothing twice; the Tune experiment lives under searches/autolrs-<key>/tune, and
the finished search is committed as searches/autolrs-<key>/results.json.
"""

from __future__ import annotations

import json
import math
from typing import Any

from asymptote.autolrs_config import AutoLRSSearchConfig, AutoLRSSearchResult
from asymptote.autolrs_job import autolrs_job
from asymptote.infra.cluster import ray_ready
from asymptote.infra.launch import launch_from_trial, tune_experiment
from asymptote.store import Store, layout
from asymptote.versioning import step_key

METRIC = "loss"


def search_key(config: AutoLRSSearchConfig) -> str:
    """The search's cache key: its config and base run, and the code version of this module (which runs it)."""
    return step_key(__name__, **config.key_parts())


def run_trial(params: dict[str, Any], search: dict[str, Any], data_rel: str) -> None:
    """A Tune function trainable: one AutoLRS run at the proposed weight decay."""
    from ray import tune

    cfg = AutoLRSSearchConfig.model_validate(search).flow_config(params["weight_decay"])
    job = autolrs_job(cfg, data_rel)
    loss = launch_from_trial(job).get("val_loss")
    tune.report({METRIC: float(loss) if loss is not None else math.inf, "run": job.run_rel, **params})


def _searcher(config: AutoLRSSearchConfig):
    if config.sampler == "random":
        return None  # Tune's default: independent draws from param_space
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=config.seed)


def _tune(config: AutoLRSSearchConfig, data_rel: str, rel: str) -> list[dict[str, Any]]:
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, search=config.model_dump(), data_rel=data_rel), {"cpu": 0.01}
    )  # the trial only waits; its run reserves the real CPUs
    flow_config = config.flow_config()
    grid = tune_experiment(
        Store(flow_config.store),
        f"{rel}/tune",
        "search",
        trainable,
        {"weight_decay": tune.loguniform(*config.weight_decay)},
        flow_config.compute,
        search_alg=_searcher(config),
        num_samples=config.samples,
        metric=METRIC,
    )
    return [
        {k: r.metrics[k] for k in ("weight_decay", METRIC, "run")}
        for r in grid
        if r.metrics and METRIC in r.metrics
    ]


def search_with_autolrs(config: AutoLRSSearchConfig, data_rel: str) -> AutoLRSSearchResult:
    """Run the search on the connected Ray cluster (or return the committed one)."""
    store = Store(config.flow_config().store)
    rel = layout("search", key=f"autolrs-{search_key(config)}")
    if store.has(rel):
        rows = store.read_json(rel, "results.json")
    else:
        ray_ready()
        rows = _tune(config, data_rel, rel)
        if not rows:
            raise RuntimeError(
                f"every trial of the search {config.name} failed; see the Tune logs under {rel}/tune"
            )
        with store.writer(rel, kind="search", meta={"what": "autolrs weight-decay search"}) as d:
            (d / "results.json").write_text(json.dumps(rows, indent=1))
    return AutoLRSSearchResult(rel=rel, results=rows, best=min(rows, key=lambda r: r[METRIC]))
