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

from asymptote.config import PretrainConfig
from asymptote.infra.cluster import compute_session
from asymptote.job import make_job
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import evaluate, prepare_data, train
from asymptote.tasks.reports import md_table, publish_report

STEPS = ("data", "train", "evaluate")


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
def pretrain(config: PretrainConfig = PretrainConfig(), recompute: list[str] = []) -> PretrainResult:  # noqa: B006
    """Prepare data -> train -> evaluate -> report. `recompute` forces steps (data, train, evaluate)."""
    check_recompute(recompute, STEPS)
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
    report = publish_report(
        store,
        "pretrain",
        run.key,
        pretrain_markdown(config, data, run, metrics),
        {"loss.png": store.read(run.rel, "loss.png")},
    )
    return PretrainResult(
        flow_run_id=flow_run.id, data=data, run=run, metrics=metrics, report_uri=report, step_states=states
    )


def pretrain_markdown(config: PretrainConfig, data: DataRef, run: RunRef, metrics: dict[str, float]) -> str:
    s = run.summary
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
    return (
        f"# Pre-training: {config.name}\n\n{md_table(rows)}\n\n"
        f"- data: `{data.uri}` ({data.n_train:,} train / {data.n_val:,} validation / {data.n_test:,} test "
        f"tokens; {data.tokenizer} tokenizer of {data.vocab_size:,} ids)\n"
        "- losses are nats per token; bpb is bits per byte of text (comparable across tokenizers); "
        "choices are made on validation, figures are reported on test\n"
        f"- run: `{run.uri}`\n- weights: `{run.weights_uri}`\n\n![loss curve](loss.png)\n"
    )


def main_step(config: PretrainConfig):
    """The main job's pretrain step: one run at the recipe's small default scale."""
    from asymptote.flows.main import StepOutcome

    res = pretrain(config)
    store = Store(config.store)
    markdown = pretrain_markdown(config, res.data, res.run, res.metrics).replace(
        "](loss.png)", "](pretrain-loss.png)"
    )
    figures = {
        "val_loss": res.metrics["val_loss"],
        "params": res.run.summary["params"],
        "run_uri": res.run.uri,
    }
    return StepOutcome(
        markdown=markdown.replace("# Pre-training", "## Pre-training"),
        figures=figures,
        files={"pretrain-loss.png": store.read(res.run.rel, "loss.png")},
        result=res,
    )
