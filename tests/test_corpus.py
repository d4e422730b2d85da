"""Corpora: every format gives the same tokens, splits by document, BPE, resumable Ray Data jobs, errors."""

from __future__ import annotations

import gzip
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import zstandard

from asymptote.config import DataConfig, StoreConfig
from asymptote.corpus import batches, list_corpus, positional_split, split_of
from asymptote.evaluation import bits_per_token, evaluate_split, mean_loss
from asymptote.shards import (
    _one_ahead,
    commit_dataset,
    dataset_key,
    load_dataset,
    load_meta,
    load_split,
    load_tokenizer,
    make_plan,
    prepare_dataset,
    source_fingerprint,
    tokenize_piece,
    tokenizer_rel,
)
from asymptote.store import Store, s3_options
from asymptote.tokenizer import ByteTokenizer, dtype_for, train_bpe


def _docs() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


DOCS = _docs()
CFG = {"val_fraction": 0.2, "test_fraction": 0.2}


def _chunks(docs, n):
    k = math.ceil(len(docs) / n)
    return [docs[i : i + k] for i in range(0, len(docs), k)]


def write_corpus(folder, fmt: str, docs=DOCS, n_files: int = 3) -> str:
    """The same documents, in n_files files of one format, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(_chunks(docs, n_files)):
        lines = "".join(json.dumps({"id": j, "text": d}) + "\n" for j, d in enumerate(part)).encode()
        if fmt == "txt":
            for j, d in enumerate(part):
                (folder / f"{i:02d}_{j:03d}.txt").write_text(d)
        elif fmt == "jsonl":
            (folder / f"{i:02d}.jsonl").write_bytes(lines)
        elif fmt == "jsonl.gz":
            (folder / f"{i:02d}.jsonl.gz").write_bytes(gzip.compress(lines))
        elif fmt == "jsonl.zst":  # two frames per file: readers must read across frames
            c = zstandard.ZstdCompressor()
            half = len(lines) // 2
            (folder / f"{i:02d}.jsonl.zst").write_bytes(c.compress(lines[:half]) + c.compress(lines[half:]))
        elif fmt == "json":
            (folder / f"{i:02d}.json").write_text(json.dumps([{"text": d} for d in part]))
        elif fmt == "parquet":
            pq.write_table(
                pa.table({"id": list(range(len(part))), "text": part}), folder / f"{i:02d}.parquet"
            )
    return str(folder)


FORMATS = ["txt", "jsonl", "jsonl.gz", "jsonl.zst", "json", "parquet"]


def _splits(store, rel):
    return [load_split(store, rel, s) for s in ("train", "val", "test")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The jsonl corpus tokenised once: every other format must give exactly these tokens."""
    root = tmp_path_factory.mktemp("ref")
    store = Store(str(root / "store"))
    rel = prepare_dataset(DataConfig(source=write_corpus(root / "c", "jsonl"), **CFG), store)
    return _splits(store, rel)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_same_tokens(tmp_path, store, fmt, reference):
    rel = prepare_dataset(DataConfig(source=write_corpus(tmp_path / fmt, fmt), **CFG), store)
    for got, want in zip(_splits(store, rel), reference, strict=True):
        assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_a_glob_selects_files(tmp_path, store, reference):
    write_corpus(tmp_path / "c", "jsonl.zst")
    (tmp_path / "c" / "notes.md").write_text("not a corpus file")
    rel = prepare_dataset(DataConfig(source=str(tmp_path / "c" / "*.jsonl.zst"), **CFG), store)
    assert all(np.array_equal(a, b) for a, b in zip(_splits(store, rel), reference, strict=True))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_from_s3(tmp_path, store, fmt, reference, s3_endpoint):
    from servers import make_bucket

    make_bucket(s3_endpoint, bucket := f"corpus-{fmt.replace('.', '-')}")
    opts = s3_options(StoreConfig(uri=f"s3://{bucket}", endpoint_url=s3_endpoint))
    src = Store(StoreConfig(uri=f"s3://{bucket}", endpoint_url=s3_endpoint))
    local = write_corpus(tmp_path / fmt, fmt)
    src.fs.put(local + "/", src.path("corpus") + "/", recursive=True)
    rel = prepare_dataset(DataConfig(source=f"s3://{bucket}/corpus", **CFG), store, opts)
    assert all(np.array_equal(a, b) for a, b in zip(_splits(store, rel), reference, strict=True))


def test_splits_are_by_document_deterministic_and_disjoint(reference):
    sep = b"\n"  # the byte tokenizer's document separator
    which = [split_of(d, **CFG) for d in DOCS]
    for s, tokens in enumerate(reference):
        want = b"".join(d.encode() + sep for d, w in zip(DOCS, which, strict=True) if w == s)
        assert tokens.tobytes() == want  # every document whole, in exactly one split, in order
    assert {0, 1, 2} <= set(which)
    assert which == [split_of(d, **CFG) for d in DOCS]
    # the test split does not move when only val_fraction changes
    assert [w == 2 for w in which] == [split_of(d, 0.05, 0.2) == 2 for d in DOCS]


def test_a_single_text_splits_by_position_and_keeps_nanogpts_protocol(tmp_path, store):
    text = "ünïcödé lines of text\n" * 500
    train, val, test = positional_split(text, 0.1, 0.05)
    assert train + val + test == text and len(test.encode()) == pytest.approx(
        0.05 * len(text.encode()), abs=2
    )
    src = tmp_path / "a.txt"
    src.write_text(text)
    rel = prepare_dataset(DataConfig(source=str(src), test_fraction=0), store)
    tr, va, meta = load_dataset(store, rel)
    blob = text.encode()
    n = int(len(blob) * 0.9)
    assert tr.tobytes() == blob[:n] and va.tobytes() == blob[n:] and meta["n_test"] == 0
    assert meta["split_by"] == "position" and meta["bytes_per_token"]["train"] == 1.0


def test_job_killed_after_some_pieces_resumes_without_redoing_them(tmp_path, ray_local, reference):
    from asymptote.tasks.tokenize import tokenize_corpus

    store = Store(str(tmp_path / "store"))
    cfg = DataConfig(
        source=write_corpus(tmp_path / "c", "jsonl", n_files=6), tokenize_in_process_max_bytes=0, **CFG
    )
    plan = make_plan(cfg, store)
    for piece in plan.todo()[:2]:  # what a job killed after two pieces leaves: shards and markers
        tokenize_piece(plan, piece)
    assert not store.has(plan.rel) and plan.todo() == [2, 3, 4, 5]
    before = {i: (tmp_path / "store" / plan.marker(i)).stat().st_mtime_ns for i in (0, 1)}
    rel, stats = tokenize_corpus(cfg, store)
    assert rel == plan.rel and stats == {"pieces": 6, "ran": 4, "tokens": stats["tokens"]}
    assert before == {i: (tmp_path / "store" / plan.marker(i)).stat().st_mtime_ns for i in (0, 1)}
    assert all(np.array_equal(a, b) for a, b in zip(_splits(store, rel), reference, strict=True))
    assert tokenize_corpus(cfg, store) == (rel, {"pieces": None, "ran": 0, "tokens": 0})  # found by key


def test_a_small_corpus_is_tokenised_in_process_with_the_same_tokens(tmp_path, reference, monkeypatch):
    """Up to data.tokenize_in_process_max_bytes no Ray Data job runs (its start-up would cost more than
    the work); the artifact is the one the job writes. One byte over the limit and the job runs."""
    from asymptote.shards import corpus_bytes
    from asymptote.tasks import tokenize

    source = write_corpus(tmp_path / "c", "jsonl.gz")
    size = corpus_bytes(DataConfig(source=source))

    class RayDataJob(Exception):
        """Raised where the Ray Data job would start."""

    def job(plan, pieces, concurrency=None):
        raise RayDataJob(pieces)

    monkeypatch.setattr(tokenize, "run_pieces", job)
    store = Store(str(tmp_path / "store"))
    small = DataConfig(source=source, tokenize_in_process_max_bytes=size, **CFG)
    rel, stats = tokenize.tokenize_corpus(small, store)
    assert stats["pieces"] == stats["ran"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(_splits(store, rel), reference, strict=True))
    over = small.model_copy(update={"tokenize_in_process_max_bytes": size - 1})
    with pytest.raises(RayDataJob) as job_started:
        tokenize.tokenize_corpus(over, Store(str(tmp_path / "other")))
    assert job_started.value.args == ([0, 1, 2],)


def test_bpe_round_trips_text_exactly():
    tok = train_bpe(DOCS, vocab_size=600)
    assert tok.vocab_size == 600 and tok.dtype == np.uint16
    for text in [
        "  To be,\tor not to be: ünïcödé ✓ 日本語\r\n\n  trailing  ",
        DOCS[3],
        "",
        "\x00\x01 odd bytes",
    ]:
        assert tok.decode(tok.encode(text)) == text


def test_bpe_dataset_carries_its_tokenizer_and_bytes_per_token(tmp_path, store):
    cfg = DataConfig(source=write_corpus(tmp_path / "c", "jsonl"), tokenizer="bpe", vocab_size=600, **CFG)
    rel = prepare_dataset(cfg, store)
    meta, tok = load_meta(store, rel), load_tokenizer(store, rel)
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 600 and store.artifacts("tokenizers")
    train = load_split(store, rel, "train")
    docs = [tok.decode(d) for d in np.split(train, np.flatnonzero(train == tok.eos_id) + 1)[:-1]]
    want = [d for d in DOCS if split_of(d, **CFG) == 0]
    assert [d.removesuffix("<|endoftext|>") for d in docs] == want
    assert meta["bytes_per_token"]["train"] == pytest.approx(
        (sum(len(d.encode()) + 1 for d in want)) / len(train)
    )
    assert meta["bytes_per_token"]["train"] > 2  # a subword vocabulary packs several bytes per token
    # Batches are encoded whole and routed afterwards: each split holds exactly its documents' ids,
    # each followed by end-of-text, in corpus order.
    for s, name in enumerate(("train", "val", "test")):
        want_ids = [np.append(tok.encode(d), tok.eos_id) for d in DOCS if split_of(d, **CFG) == s]
        assert np.array_equal(load_split(store, rel, name), np.concatenate(want_ids))


def test_encode_docs_is_each_text_then_its_end_of_text_and_grouped_splits_them_in_order():
    texts = [DOCS[0], "", "ünïcödé ✓", DOCS[5], DOCS[7]]
    for tok in (ByteTokenizer(), train_bpe(DOCS, vocab_size=600)):
        want = [np.append(tok.encode(t), tok.eos_id) for t in texts]
        flat = tok.encode_docs(texts)
        assert flat.dtype == tok.dtype and np.array_equal(flat, np.concatenate(want))
        assert tok.encode_docs([]).size == 0
        groups = [2, 0, 2, 0, 2]  # group 1 gets no text
        parts = tok.grouped(tok.encode_each(texts), groups, 3)
        assert [p.dtype for p in parts] == [tok.dtype] * 3 and parts[1].size == 0
        for g in (0, 2):
            assert np.array_equal(
                parts[g], np.concatenate([w for w, h in zip(want, groups, strict=True) if h == g])
            )


def test_encoding_one_batch_ahead_keeps_order_and_holds_at_most_three_batches():
    read, held = [], []

    def items():
        for i in range(50):
            read.append(i)
            yield i

    with ThreadPoolExecutor(1) as pool:
        got = []
        for item, result in _one_ahead(pool, lambda i: i * i, items()):
            got.append((item, result))
            held.append(len(read) - len(got))  # read but not yet handed over
    assert got == [(i, i * i) for i in range(50)]
    assert held == [1] * 49 + [0]  # one in fn while the caller holds one (Executor.map: all 50 read)


class Uniform(torch.nn.Module):
    """Logits that are all equal: loss is exactly ln(vocab) nats per token."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab)


def test_bits_per_byte_agree_with_the_byte_tokenizers_loss(reference):
    val = reference[1]
    meta = {"tokenizer": "byte", "bytes_per_token": {"val": 1.0}}
    out = evaluate_split(Uniform(256), val, meta, "val", block=32)
    assert out["val_loss"] == pytest.approx(math.log(256)) == mean_loss(Uniform(256), val, 32)
    assert out["val_bpb"] == pytest.approx(out["val_bits_per_token"]) == pytest.approx(8.0)
    out = evaluate_split(Uniform(256), val, {"tokenizer": "bpe", "bytes_per_token": {"val": 4.0}}, "val", 32)
    assert out["val_bpb"] == pytest.approx(bits_per_token(math.log(256)) / 4)


# ----------------------------------------------------------------------------- errors


def test_missing_field_is_named(tmp_path, store):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(ValueError, match=r"a.jsonl:1: no field 'text' \(data.text_field\).*content"):
        prepare_dataset(DataConfig(source=str(tmp_path / "c")), store)
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"no column 'text'.*body"):
        prepare_dataset(DataConfig(source=str(tmp_path / "b.parquet")), store)


def test_text_field_is_configurable(tmp_path, store, reference):
    folder = tmp_path / "c"
    folder.mkdir()
    pq.write_table(pa.table({"body": DOCS}), folder / "a.parquet")
    rel = prepare_dataset(DataConfig(source=str(folder), text_field="body", **CFG), store)
    assert all(np.array_equal(a, b) for a, b in zip(_splits(store, rel), reference, strict=True))


def test_empty_binary_and_mixed_sources_are_refused(tmp_path, store):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        prepare_dataset(DataConfig(source=str(tmp_path / "empty.jsonl")), store)
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 10)
    with pytest.raises(ValueError, match="binary"):
        prepare_dataset(DataConfig(source=str(tmp_path / "blob.txt")), store)
    (tmp_path / "bin.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError, match="binary"):
        prepare_dataset(DataConfig(source=str(tmp_path / "bin.jsonl")), store)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.txt").write_text("a")
    (mixed / "b.jsonl").write_text('{"text": "b"}\n')
    with pytest.raises(ValueError, match=r"mixes formats \['jsonl', 'txt'\]"):
        list_corpus(str(mixed))


def test_vocabulary_too_large_for_the_dtype(tmp_path, store):
    assert dtype_for(256) == np.uint8 and dtype_for(257) == np.uint16 and dtype_for(70_000) == np.uint32
    with pytest.raises(ValueError, match="token_dtype=uint16.*70000"):
        dtype_for(70_000, "uint16")
    cfg = DataConfig(
        source=write_corpus(tmp_path / "c", "jsonl"), tokenizer="bpe", vocab_size=600, token_dtype="uint8"
    )
    with pytest.raises(ValueError, match="token_dtype=uint8"):
        prepare_dataset(cfg, store)


def test_fractions_are_validated():
    with pytest.raises(ValueError, match="below 1"):
        DataConfig(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="tokenizer"):
        DataConfig(tokenizer="wordpiece")


def test_too_few_documents_name_the_empty_split(tmp_path, store):
    write_corpus(tmp_path / "c", "jsonl", docs=DOCS[:2], n_files=1)
    with pytest.raises(ValueError, match="split is empty"):
        prepare_dataset(DataConfig(source=str(tmp_path / "c")), store)


def test_commit_needs_every_piece(tmp_path, store):
    plan = make_plan(DataConfig(source=write_corpus(tmp_path / "c", "jsonl"), **CFG), store)
    tokenize_piece(plan, 0)
    with pytest.raises(FileNotFoundError):
        commit_dataset(plan)


# ----------------------------------------------------------------------------- bounded memory


def test_batches_are_bounded_in_characters():
    docs = ["x" * 300] * 10
    assert [len(b) for b in batches(iter(docs), max_chars=1000)] == [4, 4, 2]
    assert [len(b) for b in batches(iter(docs))] == [10]


def test_pieces_at_once_follow_the_cpus_and_the_limit():
    from asymptote.tasks.tokenize import pieces_at_once

    assert pieces_at_once(cpus=2, per_piece=2, pieces=64) == 1
    assert pieces_at_once(cpus=16, per_piece=2, pieces=64) == 8
    assert pieces_at_once(cpus=16, per_piece=1, pieces=3) == 3
    assert pieces_at_once(cpus=16, per_piece=2, pieces=64, limit=2) == 2
    assert pieces_at_once(cpus=1, per_piece=2, pieces=5) == 1  # never zero


def test_small_files_are_grouped_into_tasks_that_fill_every_slot():
    from asymptote.tasks.tokenize import task_groups

    assert task_groups([3] * 16, target=32, slots=1) == [list(range(8)), list(range(8, 16))]
    assert task_groups([3] * 8, target=100, slots=4) == [[0, 1], [2, 3], [4, 5], [6, 7]]  # a slot each
    assert task_groups([3] * 4, target=0, slots=1) == [[0], [1], [2], [3]]  # 0: one file per task
    assert task_groups([100, 1, 1, 1], target=10, slots=1) == [[0], [1], [2], [3]]  # never fewer files
    assert task_groups([0, 0], target=10, slots=1) == [[0], [1]]  # sizes unknown: one file per task
    groups = task_groups([5, 1, 1, 1, 1, 1, 5, 5], target=10, slots=1)
    assert sum(groups, []) == list(range(8)) and len(groups) == 2  # consecutive, each file once


def test_memory_settings_do_not_change_the_data_key(tmp_path):
    src = write_corpus(tmp_path / "c", "jsonl")
    a = DataConfig(source=src, **CFG)
    b = DataConfig(
        source=src, tokenize_cpus_per_piece=1, tokenize_batch_chars=4096, tokenize_task_bytes=0, **CFG
    )
    fp = source_fingerprint(src)
    assert dataset_key(a, fp) == dataset_key(b, fp)


@pytest.mark.slow
def test_ray_job_trains_the_bpe_in_a_worker_and_matches_the_in_process_path(tmp_path, ray_local):
    from asymptote.tasks.tokenize import ensure_tokenizer, tokenize_corpus

    cfg = DataConfig(
        source=write_corpus(tmp_path / "c", "jsonl.zst"),
        tokenizer="bpe",
        vocab_size=400,
        tokenize_batch_chars=20_000,  # many batches per piece: the bound must not change the tokens
        tokenize_in_process_max_bytes=0,  # a Ray Data job, however small the corpus
        tokenize_task_bytes=0,  # a task per file (the resume test runs its files grouped in one task)
        **CFG,
    )
    ray_store, local_store = Store(str(tmp_path / "ray")), Store(str(tmp_path / "local"))
    ensure_tokenizer(cfg, ray_store, {})
    assert ray_store.has(tokenizer_rel(cfg))
    rel, stats = tokenize_corpus(cfg, ray_store)
    assert stats["ran"] == 3 and load_meta(ray_store, rel)["vocab_size"] == 400
    local = prepare_dataset(cfg.model_copy(update={"tokenize_batch_chars": 1 << 20}), local_store)
    assert local == rel
    for a, b in zip(_splits(ray_store, rel), _splits(local_store, local), strict=True):
        assert a.dtype == np.uint16 and np.array_equal(a, b)
