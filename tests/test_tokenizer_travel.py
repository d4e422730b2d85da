"""A model's tokenizer travels with it: runs, soups and synthetic data carry tokenizer.json, and the
model's vocabulary follows the data's tokenizer unless the config sets it (then it must hold it)."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.config import DataConfig, ModelConfig, TrainConfig
from asymptote.dist import DistEnv
from asymptote.job import run_job
from asymptote.job_spec import fit_vocab, make_job
from asymptote.shards import load_meta, load_tokenizer, prepare_dataset

SHAPE = dict(n_layer=1, n_head=2, d_model=16, d_ff=32, block_size=16)
TEXT = "To be, or not to be: that is the question. ünïcödé ✓"


def _docs() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)][:120]


@pytest.fixture
def bpe_data(tmp_path, store) -> str:
    import json

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in _docs()))
    cfg = DataConfig(source=str(folder), tokenizer="bpe", vocab_size=300, val_fraction=0.2)
    return prepare_dataset(cfg, store)


def _job(rel: str, store_uri: str, model: ModelConfig):
    train = TrainConfig(max_steps=2, batch_size=2, warmup_steps=1, eval_every=2, eval_windows=2)
    data = DataConfig(tokenizer="bpe", vocab_size=300)
    return make_job(
        name="t", model=model, data=data, train=train, data_artifact=rel, store={"uri": store_uri}
    )


def test_presets_leave_the_vocabulary_unset_and_it_follows_the_data():
    assert "vocab_size" not in ModelConfig(preset="cpu-0.1m").model_fields_set
    assert fit_vocab(ModelConfig(**SHAPE), 8192).vocab_size == 8192
    assert fit_vocab(ModelConfig(**SHAPE, vocab_size=9000), 8192).vocab_size == 9000
    with pytest.raises(ValueError, match=r"model.vocab_size=256 is smaller than the data's tokenizer \(8192"):
        fit_vocab(ModelConfig(**SHAPE, vocab_size=256), 8192)


def test_a_run_carries_its_data_tokenizer_and_sizes_its_vocabulary(bpe_data, store, store_uri):
    job = _job(bpe_data, store_uri, ModelConfig(**SHAPE))
    assert job.model.vocab_size == 300 == load_meta(store, bpe_data)["vocab_size"]
    with pytest.raises(ValueError, match="model.vocab_size=256"):
        _job(bpe_data, store_uri, ModelConfig(**SHAPE, vocab_size=256))
    run_job(job, DistEnv(), report=lambda record: None)
    assert store.manifest(job.run_rel).meta["tokenizer"] == "bpe"
    tok, want = load_tokenizer(store, job.run_rel), load_tokenizer(store, bpe_data)
    assert tok.to_json() == want.to_json() and tok.decode(tok.encode(TEXT)) == TEXT


def test_soups_and_synthetic_data_carry_the_tokenizer(bpe_data, store):
    import torch

    from asymptote.soups_worker import commit_model
    from asymptote.synthetic import save_synthetic

    want = load_tokenizer(store, bpe_data).to_json()
    commit_model(store, "soups/s/uniform", {"w": torch.zeros(2)}, {"data": bpe_data})
    corpus = store.manifest(bpe_data).meta
    sequences = np.arange(40 * 17).reshape(40, 17).astype(np.uint16) % 300
    save_synthetic(store, "data/synth", sequences, corpus, tokenizer_json=want)
    for rel in ("soups/s/uniform", "data/synth"):
        assert load_tokenizer(store, rel).to_json() == want
    assert load_meta(store, "data/synth")["vocab_size"] == 300
