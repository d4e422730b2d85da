"""Tokenizer, split, epoch order and batching."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.config import DataConfig
from asymptote.data import ByteTokenizer, EpochBatcher, epoch_windows, read_source, split_tokens, steps_for
from asymptote.shards import load_dataset, prepare_dataset


def test_byte_tokenizer_round_trip_including_unicode():
    tok = ByteTokenizer()
    text = "To be, or not to be: ünïcödé ✓\n"
    ids = tok.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text.encode())
    assert tok.decode(ids) == text


def test_split_is_positional_and_deterministic():
    tokens = np.arange(1000) % 256
    train, val = split_tokens(tokens, 0.1)
    assert len(val) == 100 and (val == tokens[900:]).all() and (train == tokens[:900]).all()


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_windows(10_000, 64, data_seed=3, epoch=2)
    assert (a == epoch_windows(10_000, 64, data_seed=3, epoch=2)).all()
    assert not (a == epoch_windows(10_000, 64, data_seed=3, epoch=3)).all()
    assert not (a == epoch_windows(10_000, 64, data_seed=4, epoch=2)).all()


def test_batcher_covers_each_window_once_per_epoch_and_resumes():
    tokens = np.arange(64 * 40 + 1).astype(np.int64)
    b = EpochBatcher(tokens, block=64, batch_size=4, data_seed=0)
    starts = []
    for _ in range(b.windows_per_epoch // 4):
        x, y = b.next_batch()
        assert (y[:, :-1] == x[:, 1:]).all()
        starts += x[:, 0].tolist()
    assert len(set(starts)) == len(starts)
    state = b.state_dict()
    expected = b.next_batch()[0]
    b2 = EpochBatcher(tokens, block=64, batch_size=4, data_seed=0)
    b2.load_state_dict(state)
    assert (b2.next_batch()[0] == expected).all()


def test_ranks_split_the_global_batch():
    tokens = np.arange(64 * 40 + 1)
    whole = EpochBatcher(tokens, 64, 4, 0).next_batch()[0]
    parts = [EpochBatcher(tokens, 64, 4, 0, rank=r, world=2).next_batch()[0] for r in range(2)]
    assert (np.concatenate(parts) == whole.numpy()).all()


def test_steps_for_epochs():
    assert steps_for(64 * 100 + 1, 64, 10, epochs=2.0, max_steps=None) == 20
    assert steps_for(64 * 100 + 1, 64, 10, epochs=2.0, max_steps=7) == 7


def test_builtin_corpus_needs_no_download():
    assert len(read_source("builtin:python-docs")) > 400_000


def test_missing_source_names_the_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.source"):
        read_source(str(tmp_path / "nope.txt"))


def test_shards_keyed_by_content_and_budget_cuts(tmp_path, store):
    src = tmp_path / "a.txt"
    src.write_text("hello world " * 2000)
    cfg = DataConfig(source=str(src))
    rel = prepare_dataset(cfg, store)
    assert prepare_dataset(cfg, store) == rel  # same content -> same artifact
    train, val, meta = load_dataset(store, rel, max_train_tokens=1000)
    assert len(train) == 1000 and meta["n_val"] == len(val) == 2400
    src.write_text("other text " * 2000)
    assert prepare_dataset(cfg, store) != rel
    with pytest.raises(ValueError, match="max_train_tokens"):
        load_dataset(store, rel, max_train_tokens=10**9)


def test_folder_source_reads_txt_files_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("BBB")
    (tmp_path / "a.txt").write_text("AAA")
    (tmp_path / "skip.bin").write_bytes(b"\0")
    assert read_source(str(tmp_path)) == b"AAA\nBBB"


def test_to_device_keeps_values_and_makes_views_contiguous():
    import torch

    from asymptote.data import to_device, windows_to_batch

    tokens = np.arange(200, dtype=np.uint8)
    x, y = windows_to_batch(tokens, [0, 50, 100], 16)
    assert not y.is_contiguous()  # a view of the (block + 1)-wide chunk
    assert torch.equal(to_device(y, torch.device("cpu")), y)
    if torch.cuda.is_available():
        moved = to_device(y, torch.device("cuda"))
        torch.cuda.synchronize()
        assert moved.is_cuda and moved.is_contiguous() and torch.equal(moved.cpu(), y)
