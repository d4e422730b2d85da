"""Reports are drawn once per result and committed once: a call whose every step is cached redraws and
rewrites nothing."""

from __future__ import annotations

import functools

from asymptote.config import PretrainConfig, PretrainResult
from asymptote.flows.reporting import method_report, publish_report
from asymptote.refs import DataRef, RunRef
from asymptote.reports import pretrain as pretrain_report
from asymptote.store import Store


def _result(store: Store, val_loss: float) -> PretrainResult:
    with store.writer("runs/r1", kind="run") as d:
        (d / "loss.png").write_bytes(b"\x89PNG not really")
    data = DataRef(rel="data/d1", uri=store.uri("data/d1"), n_train=100, n_val=10, source_sha256="x")
    summary = {"params": 10, "steps": 5, "tokens": 50, "wall_s": 1.0}
    run = RunRef(key="r1", name="run", rel="runs/r1", uri="", weights_uri="", summary=summary)
    metrics = {"val_loss": val_loss, "val_bits_per_token": val_loss / 0.693}
    return PretrainResult(
        flow_run_id="a",
        data=data,
        run=run,
        metrics=metrics,
        report_uri="",
        step_states={"train": "Completed"},
    )


def test_a_report_section_is_drawn_once_per_result(store, monkeypatch):
    config = PretrainConfig()
    drawn = []
    real = pretrain_report.report
    counted = functools.wraps(real)(lambda *a, **kw: drawn.append(1) or real(*a, **kw))  # keeps its module
    monkeypatch.setattr(pretrain_report, "report", counted)

    first = method_report("pretrain", config, _result(store, 2.0), store)
    # the same result from a later, fully cached call: another flow run id and step states
    again = _result(store, 2.0).model_copy(update={"flow_run_id": "b", "step_states": {"train": "Cached"}})
    second = method_report("pretrain", config, again, store)
    assert len(drawn) == 1
    assert (second.markdown, second.files, second.figures) == (first.markdown, first.files, first.figures)

    method_report("pretrain", config, _result(store, 1.5), store)  # another result: drawn anew
    method_report("pretrain", config, _result(store, 2.0), store, level=2, prefix="pretrain-")
    assert len(drawn) == 3


def test_an_unchanged_report_is_not_rewritten(store):
    uri = publish_report(store, "toy", "k1", "# same\n", {"a.png": b"png"})
    rel = store.relpath(uri).rsplit("/", 1)[0]
    created = store.manifest(rel).created
    store.rm(f"{rel}/a.png")  # were it rewritten, the file would be back
    publish_report(store, "toy", "k1", "# same\n", {"a.png": b"png"})
    assert store.manifest(rel).created == created and not store.exists(f"{rel}/a.png")
    publish_report(store, "toy", "k1", "# changed\n", {"a.png": b"png"})
    assert store.read(rel, "report.md") == b"# changed\n" and store.read(rel, "a.png") == b"png"
