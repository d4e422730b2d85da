"""A stage of the main job or the recipe is not started again while its config, corpus, code and the
artifacts its result names are unchanged; any change to one of them runs it."""

from __future__ import annotations

from helpers import tiny_pretrain_config

from asymptote.config import PretrainResult
from asymptote.flows.stage_memo import committed, named_paths, reuse_or_run
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store


def _commit(store: Store, rel: str) -> None:
    with store.writer(rel, kind="run") as folder:
        (folder / "model.safetensors").write_bytes(b"weights")


class Stage:
    """A stand-in for a stage's flow: commits one run and counts its calls."""

    def __init__(self, store: Store, run_key: str = "r1"):
        self.store, self.run_key, self.calls = store, run_key, 0

    def __call__(self) -> PretrainResult:
        self.calls += 1
        run_rel, data_rel = f"runs/{self.run_key}", "data/d1"
        for rel in (run_rel, data_rel):
            _commit(self.store, rel)
        data = DataRef(rel=data_rel, uri=self.store.uri(data_rel), n_train=1, n_val=1, source_sha256="x")
        run = RunRef(
            key=self.run_key,
            name="tiny",
            rel=run_rel,
            uri=self.store.uri(run_rel),
            weights_uri=self.store.uri(run_rel, "model.safetensors"),
            summary={"val_loss": 2.0 + self.calls},
        )
        return PretrainResult(
            flow_run_id=f"flow-{self.calls}", data=data, run=run, metrics={}, report_uri="", step_states={}
        )


def test_an_unchanged_stage_is_reused_and_any_change_runs_it(tmp_path, store_uri, store):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be " * 200)
    config = tiny_pretrain_config(store_uri, source=str(corpus))
    stage = Stage(store)

    first = reuse_or_run("pretrain", config, store, stage)
    assert stage.calls == 1 and first.flow_run_id == "flow-1"
    again = reuse_or_run("pretrain", config, store, stage)
    assert stage.calls == 1 and again == first  # not started: the stored result, as it was

    moved = tiny_pretrain_config(store_uri, source=str(corpus), log_every=3)  # a volatile field
    assert reuse_or_run("pretrain", moved, store, stage) == first and stage.calls == 1

    changed = tiny_pretrain_config(store_uri, source=str(corpus), lr=1e-3)
    assert reuse_or_run("pretrain", changed, store, stage).flow_run_id == "flow-2"

    corpus.write_text("a different corpus at the same path " * 200)
    assert reuse_or_run("pretrain", config, store, stage).flow_run_id == "flow-3"
    assert reuse_or_run("pretrain", config, store, stage).flow_run_id == "flow-3"

    store.rm("runs/r1")  # an artifact the stored result names is gone: the stage runs again
    assert reuse_or_run("pretrain", config, store, stage).flow_run_id == "flow-4"
    assert stage.calls == 4


def test_named_paths_are_the_store_paths_and_uris_of_a_result(store):
    _commit(store, "runs/k")
    value = {
        "run": store.uri("runs/k"),
        "weights": store.uri("runs/k", "model.safetensors"),
        "rel": "runs/k",
        "entries": [{"rel": "soups/s/uniform"}, {"name": "uniform"}],
        "corpus": "/somewhere/else/corpus.txt",
        "note": "runs",
    }
    paths = named_paths(store, value)
    assert paths == {"runs/k", "runs/k/model.safetensors", "soups/s/uniform"}
    assert committed(store, "runs/k/model.safetensors") and committed(store, "runs/k")
    assert not committed(store, "soups/s/uniform")
    _commit(store, "soups/s/uniform")  # a soup is committed one level deeper than its key
    assert committed(store, "soups/s/uniform")
