"""The pre-training report: one row of figures, where the data, run and weights are, the loss curve."""

from __future__ import annotations

from asymptote.config import PretrainConfig, PretrainResult
from asymptote.reports import Report, md_table, shift_headings
from asymptote.store import Store


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
        "test_loss": result.metrics.get("test_loss"),
        "params": result.run.summary["params"],
        "run_uri": result.run.uri,
    }
    test = f"test_loss {figures['test_loss']:.4f}; " if figures["test_loss"] is not None else ""
    return figures, f"{test}val_loss {figures['val_loss']:.4f}; run {result.run.uri}"


def table(result: PretrainResult) -> list[dict]:
    """The headline rows (a Prefect table artifact): each metric of the final evaluation, and the size."""
    rows = [{"figure": name, "value": value} for name, value in result.metrics.items()]
    return rows + [{"figure": "params", "value": result.run.summary["params"]}]
