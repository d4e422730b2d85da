"""Pre-train one language model on a fixed corpus.

The spine every method shares: the corpus is tokenised once into shards in the artifact store, a Ray
Train job trains the model (resuming from its latest checkpoint if one exists), and the final weights
are evaluated on the held-out split. Each step is a Prefect task, retried and cached by a key of
what can change its result, so a second call with the same config trains nothing, on any machine
that shares the store.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from asymptote import methods, preflight
from asymptote.config import PretrainConfig
from asymptote.infra.cluster import compute_session
from asymptote.job_spec import make_job
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import evaluate, prepare_data, train
from asymptote.tasks.reports import Report, md_table, method_report, publish_report, shift_headings

STEPS = methods.METHODS["pretrain"].steps


class PretrainResult(BaseModel):
    """What `pretrain` returns: references into the store and the headline metrics."""

    flow_run_id: str | None
    data: DataRef
    run: RunRef
    metrics: dict[str, float] = Field(default_factory=dict)
    report_uri: str
    step_states: dict[str, str] = Field(default_factory=dict)
    """Final Prefect state of each step: Completed (computed now) or Cached (reused)."""


@flow(name="pretrain", log_prints=True)
def pretrain(config: PretrainConfig | None = None, recompute: list[str] | None = None) -> PretrainResult:
    """Prepare data -> train -> evaluate -> report. `recompute` forces steps (data, train, evaluate)."""
    config = config or PretrainConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        states: dict[str, str] = {}
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
    return result


def report(
    config: PretrainConfig, result: PretrainResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    s, data, run, metrics = result.run.summary, result.data, result.run, result.metrics
    rows = [
        {
            "model": config.model.preset or "custom",
            "params": s["params"],
            "steps": s["steps"],
            "tokens": s["tokens"],
            "val_loss": metrics["val_loss"],
            "bits/token": metrics["val_bits_per_token"],
            "val_bpb": metrics.get("val_bpb", "-"),
            "test_loss": metrics.get("test_loss", "-"),
            "test_bpb": metrics.get("test_bpb", "-"),
            "train_wall_s": round(s["wall_s"], 1),
        }
    ]
    plot = f"{prefix}loss.png"
    markdown = (
        f"# Pre-training: {config.name}\n\n{md_table(rows)}\n\n"
        f"- data: `{data.uri}` ({data.n_train:,} train / {data.n_val:,} validation / {data.n_test:,} test "
        f"tokens; {data.tokenizer} tokenizer of {data.vocab_size:,} ids)\n"
        "- losses are nats per token; bpb is bits per byte of text (comparable across tokenizers); "
        "choices are made on validation, figures are reported on test\n"
        f"- run: `{run.uri}`\n- weights: `{run.weights_uri}`\n\n![loss curve]({plot})\n"
    )
    files = {plot: store.read(run.rel, "loss.png")}
    return Report(shift_headings(markdown, level - 1), files, summary(result)[0])


def summary(result: PretrainResult) -> tuple[dict, str]:
    figures = {
        "val_loss": result.metrics["val_loss"],
        "params": result.run.summary["params"],
        "run_uri": result.run.uri,
    }
    return figures, f"val_loss {figures['val_loss']:.4f}; run {result.run.uri}"
