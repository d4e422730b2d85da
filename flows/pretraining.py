"""Pre-train one language model on a fixed corpus.

The spine every method shares:
1. data: the corpus is tokenised once into shards in the artifact store;
2. train: a Ray Train job trains the model, resuming from its latest checkpoint if one exists;
3. evaluate: the final weights are scored on the validation and held-out test splits;
4. report: a markdown report with the loss curve, committed to the store.
Each step is a Prefect task, retried and cached by a key of what can change its result, so a second
call with the same config trains nothing, on any machine that shares the store.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from asymptote import preflight
from asymptote.config import PretrainConfig, PretrainResult
from asymptote.flows.registry import METHODS
from asymptote.flows.reporting import method_report, publish_report, publish_results
from asymptote.infra.cluster import compute_session
from asymptote.job_spec import make_job
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import evaluate, prepare_data, train

STEPS = METHODS["pretrain"].steps


@flow(name="pretrain", log_prints=True)
def pretrain(config: PretrainConfig | None = None, recompute: list[str] | None = None) -> PretrainResult:
    """Prepare data -> train -> evaluate -> report. `recompute` forces steps (data, train, evaluate)."""
    config = config or PretrainConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    store = Store(config.store)
    states: dict[str, str] = {}
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store, refresh="data" in recompute, states=states)
        job = make_job(
            name=config.name,
            model=config.model,
            data=config.data,
            train=config.train,
            data_artifact=data.rel,
            compute=config.compute,
            store=store.cfg,
            progress_hub=hub,
        )
        run = train(job, refresh="train" in recompute, states=states)
        metrics = evaluate(store, run, data, refresh="evaluate" in recompute, states=states)
    result = PretrainResult(
        flow_run_id=flow_run.id, data=data, run=run, metrics=metrics, report_uri="", step_states=states
    )
    rendered = method_report("pretrain", config, result, store)
    result.report_uri = publish_report(store, "pretrain", run.key, rendered.markdown, rendered.files)
    publish_results("pretrain", config, result, store, result.report_uri)
    return result
