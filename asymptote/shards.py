"""Token shards in the store: a corpus is tokenised once, keyed by its content and settings, and reused.

data/<key>/meta.json                 tokenizer, dtype, counts, bytes per token per split, shard lists
data/<key>/tokenizer.json            the tokenizer (BPE only): every run on this data can decode it
data/<key>/<split>_<piece>_<n>.bin   raw token ids of one input file's share of a split
data/<key>/pieces/<piece>.json       written after a piece's shards: a killed job redoes only the rest
tokenizers/<key>/tokenizer.json      a trained BPE, keyed by the corpus and the tokenizer's settings

Work is cut into pieces, one per input file, and each piece writes its own shards then its marker, so
pieces can run anywhere in any order (tasks/tokenize.py maps them over Ray Data; `prepare_dataset`
runs them in this process) and the artifact is committed by one manifest at the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import fsspec
import numpy as np

from asymptote.config import DataConfig, stable_hash
from asymptote.corpus import (
    SPLITS,
    CorpusFile,
    batches,
    is_single_text,
    iter_documents,
    list_corpus,
    positional_split,
    read_text,
    split_of,
    split_of_bytes,
)
from asymptote.store import MANIFEST, Manifest, Store, layout, sha256_file
from asymptote.tokenizer import BPETokenizer, ByteTokenizer, dtype_for, tokenizer_from_meta, train_bpe
from asymptote.versioning import code_version

SHARD_TOKENS = 1 << 27  # 128M tokens per shard file
_FINGERPRINTS: dict[tuple, str] = {}


# ----------------------------------------------------------------------------- keys


def source_fingerprint(source: str, storage_options: dict | None = None) -> str:
    """A cheap, machine-independent identity of the source's content.

    Local files are hashed (memoised per process by path, size and mtime); remote objects use
    their ETag and size, which the object store maintains; builtins hash their text.
    """
    fs, files = list_corpus(source, storage_options)
    if source.startswith("builtin:"):
        return hashlib.sha256(read_text(fs, files[0]).encode()).hexdigest()
    parts = [_fingerprint_one(fs, f.path) for f in files]
    return parts[0] if len(parts) == 1 else hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fingerprint_one(fs, path: str) -> str:
    info = fs.info(path)
    if "file" not in fs.protocol and "local" not in fs.protocol:
        etag = info.get("ETag") or info.get("etag") or info.get("checksum")
        return f"{path}:{info.get('size')}:{etag}"
    st = os.stat(path)
    memo = (path, st.st_size, st.st_mtime_ns)
    if memo not in _FINGERPRINTS:
        _FINGERPRINTS[memo] = sha256_file(path)
    return _FINGERPRINTS[memo]


def tokenizer_key(cfg: DataConfig, fingerprint: str) -> str:
    """Key of a BPE trained on this corpus' training split with these settings."""
    settings = ("vocab_size", "tokenizer_sample_bytes", "val_fraction", "test_fraction", "text_field")
    return stable_hash(
        {"corpus": fingerprint, "kind": "byte-level-bpe"} | {k: getattr(cfg, k) for k in settings}
    )


def tokenizer_identity(cfg: DataConfig, fingerprint: str, storage_options: dict | None = None) -> str:
    if cfg.tokenizer == "byte":
        return "byte"
    if cfg.tokenizer == "bpe":
        return f"bpe:{tokenizer_key(cfg, fingerprint)}"
    return f"file:{source_fingerprint(cfg.tokenizer, storage_options)}"


def dataset_key(cfg: DataConfig, fingerprint: str, storage_options: dict | None = None) -> str:
    """The data artifact's key (data/<key>): the source's content, the tokenisation settings and the
    code that tokenises; every run's key includes it through its data artifact path."""
    fields = ("val_fraction", "test_fraction", "text_field", "token_dtype")
    return stable_hash(
        {"source": fingerprint, "tokenizer": tokenizer_identity(cfg, fingerprint, storage_options)}
        | {k: getattr(cfg, k) for k in fields}
        | {"code": code_version(__name__)}  # what tokenises and splits (and what it imports)
    )


def corpus_bytes(cfg: DataConfig, storage_options: dict | None = None, stop_above: int | None = None) -> int:
    """The corpus' size as stored (compressed files count their compressed bytes); the sum stops once
    it passes `stop_above`, so a large corpus is not sized file by file."""
    fs, files = list_corpus(cfg.source, storage_options)
    if cfg.source.startswith("builtin:"):  # shipped with the package, read from memory
        return len(read_text(fs, files[0]).encode())
    total = 0
    for f in files:
        total += fs.size(f.path)
        if stop_above is not None and total > stop_above:
            break
    return total


def corpus_key(cfg: DataConfig, storage_options: dict | None = None) -> str:
    """dataset_key of cfg's source as it is now (fingerprinted with the store's storage options, so an
    S3 source behind a custom endpoint is read where it lives): the one way callers name a corpus."""
    return dataset_key(cfg, source_fingerprint(cfg.source, storage_options), storage_options)


def corpus_rel(cfg: DataConfig, storage_options: dict | None = None) -> str:
    """Where cfg's tokenised corpus is committed in the store (data/<corpus_key>)."""
    return layout("data", key=corpus_key(cfg, storage_options))


# ----------------------------------------------------------------------------- tokenizers


def training_sample(cfg: DataConfig, fs, files: list[CorpusFile]) -> Iterator[str]:
    """Up to tokenizer_sample_bytes of training-split text, an equal share from each file."""
    quota = max(cfg.tokenizer_sample_bytes // len(files), 1)
    for f in files:
        if is_single_text(files):
            yield positional_split(read_text(fs, f), cfg.val_fraction, cfg.test_fraction)[0][:quota]
            return
        taken = 0
        for doc in iter_documents(fs, f, cfg.text_field):
            if split_of(doc, cfg.val_fraction, cfg.test_fraction) == 0:
                yield doc
                taken += len(doc)
                if taken >= quota:
                    break


def tokenizer_rel(cfg: DataConfig, storage_options: dict | None = None) -> str | None:
    """Where the BPE cfg trains is cached (tokenizers/<key>), or None when nothing is trained."""
    if cfg.tokenizer != "bpe":
        return None
    return layout("tokenizer", key=tokenizer_key(cfg, source_fingerprint(cfg.source, storage_options)))


def resolve_tokenizer(cfg: DataConfig, store: Store, storage_options: dict | None = None):
    """The tokenizer cfg names: bytes, a tokenizer.json by path/URI, or a BPE trained once and cached.

    Training holds the sample's word counts (a few times tokenizer_sample_bytes) in this process and
    allocators rarely give that back: tasks/tokenize.py trains in a throwaway Ray worker instead."""
    if cfg.tokenizer == "byte":
        return ByteTokenizer()
    if cfg.tokenizer != "bpe":
        with fsspec.open(cfg.tokenizer, "rt", **(storage_options or {})) as fh:
            return BPETokenizer.from_json(fh.read())
    rel = tokenizer_rel(cfg, storage_options)
    if store.has(rel):
        return BPETokenizer.from_json(store.read(rel, "tokenizer.json").decode())
    fs, files = list_corpus(cfg.source, storage_options)
    tok = train_bpe(training_sample(cfg, fs, files), cfg.vocab_size)
    meta = {"tokenizer": "bpe", "vocab_size": tok.vocab_size, "source": cfg.source}
    with store.writer(rel, kind="tokenizer", meta=meta) as folder:
        (folder / "tokenizer.json").write_text(tok.to_json())
    return tok


# ----------------------------------------------------------------------------- a plan of pieces


@functools.lru_cache(maxsize=2)
def _bpe_from_json(text: str) -> BPETokenizer:
    """One tokenizer per process for a given tokenizer.json: each one built holds a few MB that freeing
    it does not return to the system, so a worker reused across pieces that built one per piece would
    grow with the corpus; one cached per process stays flat."""
    return BPETokenizer.from_json(text)


@dataclass
class Plan:
    """Everything a worker needs to tokenise one piece; small and picklable."""

    cfg: DataConfig
    store: Store
    rel: str
    files: list[CorpusFile]
    storage_options: dict
    tokenizer_json: str | None
    dtype: str

    def tokenizer(self):
        return ByteTokenizer() if self.tokenizer_json is None else _bpe_from_json(self.tokenizer_json)

    def fs(self):
        if self.cfg.source.startswith("builtin:"):
            return fsspec.filesystem("memory")
        return fsspec.core.url_to_fs(self.cfg.source, **self.storage_options)[0]

    def marker(self, piece: int) -> str:
        return f"{self.rel}/pieces/{piece:05d}.json"

    def todo(self) -> list[int]:
        """Pieces without a marker: all of them for a new job, the unfinished ones after a kill."""
        self.store.invalidate()
        return [i for i in range(len(self.files)) if not self.store.exists(self.marker(i))]


def make_plan(cfg: DataConfig, store: Store, storage_options: dict | None = None) -> Plan:
    opts = storage_options or {}
    fingerprint = source_fingerprint(cfg.source, opts)
    tok = resolve_tokenizer(cfg, store, opts)
    _, files = list_corpus(cfg.source, opts)
    return Plan(
        cfg=cfg,
        store=store,
        rel=layout("data", key=dataset_key(cfg, fingerprint, opts)),
        files=files,
        storage_options=opts,
        tokenizer_json=tok.to_json(),
        dtype=dtype_for(tok.vocab_size, cfg.token_dtype).name,
    )


# ----------------------------------------------------------------------------- one piece


class ShardWriter:
    """Appends token arrays of one split to local files, rolling over every SHARD_TOKENS tokens,
    hashing as it goes; `close` uploads the files and returns their manifest entries."""

    def __init__(self, folder: Path, prefix: str, dtype: str):
        self.folder, self.prefix, self.dtype = folder, prefix, np.dtype(dtype)
        self.files: list[tuple[str, object, int]] = []  # (name, sha256, tokens)
        self.fh, self.tokens, self.bytes, self.docs = None, 0, 0, 0

    def add(self, ids: np.ndarray, n_bytes: int, n_docs: int) -> None:
        self.bytes, self.docs = self.bytes + n_bytes, self.docs + n_docs
        while len(ids):
            if self.fh is None or self.files[-1][2] >= SHARD_TOKENS:
                self._roll()
            name, h, n = self.files[-1]
            chunk = ids[: SHARD_TOKENS - n].astype(self.dtype, copy=False)
            self.fh.write(chunk.tobytes())
            h.update(chunk.tobytes())
            self.files[-1] = (name, h, n + len(chunk))
            self.tokens += len(chunk)
            ids = ids[len(chunk) :]

    def _roll(self) -> None:
        if self.fh:
            self.fh.close()
        name = f"{self.prefix}_{len(self.files):03d}.bin"
        self.fh = open(self.folder / name, "wb")
        self.files.append((name, hashlib.sha256(), 0))

    def close(self, store: Store, rel: str) -> dict[str, dict]:
        if self.fh:
            self.fh.close()
        entries = {}
        for name, h, n in self.files:
            store.put_file(self.folder / name, f"{rel}/{name}")
            entries[name] = {"sha256": h.hexdigest(), "size": n * self.dtype.itemsize, "tokens": n}
        return entries


def _write_documents(plan: Plan, f: CorpusFile, tok, writers: dict) -> None:
    cfg, tail = plan.cfg, 0 if tok.eos_id is None else 1
    docs = batches(iter_documents(plan.fs(), f, cfg.text_field), cfg.tokenize_batch_chars)
    # A batch's encoding runs on a thread of its own (Rust's threads, lock released) while this one
    # reads the next batch and writes the last: done in turn, the encoder's cores would idle through
    # every read and write.
    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        for batch, encoded in _one_ahead(pool, tok.encode_each, docs):
            # One encode call per batch, routed afterwards: split-sized calls leave Rust threads idle.
            blobs = [doc.encode("utf-8", "surrogatepass") for doc in batch]
            which = [split_of_bytes(b, cfg.val_fraction, cfg.test_fraction) for b in blobs]
            n_docs = np.bincount(which, minlength=len(SPLITS))
            n_bytes = np.bincount(which, weights=[len(b) + tail for b in blobs], minlength=len(SPLITS))
            for i, ids in enumerate(tok.grouped(encoded, which, len(SPLITS))):
                if n_docs[i]:
                    writers[SPLITS[i]].add(ids, int(n_bytes[i]), int(n_docs[i]))


def _one_ahead(pool: ThreadPoolExecutor, fn, items: Iterator) -> Iterator[tuple]:
    """(item, fn(item)) in order, fn running on `pool` for the next item while the caller uses this
    one's: at most three items are held (the caller's, the one in fn, the one being read), so memory
    stays bounded, where Executor.map would take every item at once."""
    pending = None
    for item in items:
        future = pool.submit(fn, item)
        if pending is not None:
            yield pending[0], pending[1].result()
        pending = (item, future)
    if pending is not None:
        yield pending[0], pending[1].result()


def _write_text(plan: Plan, f: CorpusFile, tok, writers: dict) -> None:
    parts = positional_split(read_text(plan.fs(), f), plan.cfg.val_fraction, plan.cfg.test_fraction)
    for split, part in zip(SPLITS, parts, strict=True):
        if part:
            writers[split].add(tok.encode(part), len(part.encode("utf-8")), 1)


def tokenize_piece(plan: Plan, piece: int) -> dict:
    """Tokenise one input file into its shards of each split, upload them, then write its marker."""
    f, tok = plan.files[piece], plan.tokenizer()
    with tempfile.TemporaryDirectory(prefix="asymptote-piece-") as tmp:
        writers = {s: ShardWriter(Path(tmp), f"{s}_{piece:05d}", plan.dtype) for s in SPLITS}
        (_write_text if is_single_text(plan.files) else _write_documents)(plan, f, tok, writers)
        marker = {"piece": piece, "path": f.path, "files": {}}
        for s, w in writers.items():
            marker["files"] |= w.close(plan.store, plan.rel)
            marker[s] = {
                "shards": [n for n, _, _ in w.files],
                "tokens": w.tokens,
                "bytes": w.bytes,
                "docs": w.docs,
            }
    plan.store.put_bytes(plan.marker(piece), json.dumps(marker).encode())
    return marker


# ----------------------------------------------------------------------------- committing


def commit_dataset(plan: Plan) -> str:
    """Gather every piece's marker (in piece order), check the splits, write meta and the manifest."""
    markers = [json.loads(plan.store.get_bytes(plan.marker(i))) for i in range(len(plan.files))]
    meta = _meta(plan, markers)
    _check_splits(plan, meta)
    files = {n: {k: e[k] for k in ("sha256", "size")} for m in markers for n, e in m["files"].items()}
    extra = {"meta.json": json.dumps(meta, indent=1).encode()}
    if plan.tokenizer_json is not None:
        extra["tokenizer.json"] = plan.tokenizer_json.encode()
    for name, blob in extra.items():
        plan.store.put_bytes(f"{plan.rel}/{name}", blob)
        files[name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    manifest = Manifest(kind="data", files=files, meta={k: v for k, v in meta.items() if "shards" not in k})
    plan.store.put_bytes(f"{plan.rel}/{MANIFEST}", manifest.to_json().encode())
    return plan.rel


def _meta(plan: Plan, markers: list[dict]) -> dict:
    tok, cfg = plan.tokenizer(), plan.cfg
    meta = {
        "tokenizer": tok.name,
        "tokenizer_file": None if plan.tokenizer_json is None else "tokenizer.json",
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
        "dtype": plan.dtype,
        "source": cfg.source,
        "source_sha256": source_fingerprint(cfg.source, plan.storage_options),
        "text_field": cfg.text_field,
        "split_by": "position" if is_single_text(plan.files) else "document",
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "n_files": len(plan.files),
        "bytes": {},
        "bytes_per_token": {},
        "documents": {},
    }
    for s in SPLITS:
        tokens = sum(m[s]["tokens"] for m in markers)
        meta[f"n_{s}"] = tokens
        meta[f"{s}_shards"] = [n for m in markers for n in m[s]["shards"]]
        meta["bytes"][s] = sum(m[s]["bytes"] for m in markers)
        meta["documents"][s] = sum(m[s]["docs"] for m in markers)
        meta["bytes_per_token"][s] = meta["bytes"][s] / tokens if tokens else None
    return meta


def _check_splits(plan: Plan, meta: dict) -> None:
    docs = sum(meta["documents"].values())
    for s, wanted in (("train", True), ("val", True), ("test", plan.cfg.test_fraction > 0)):
        if wanted and meta[f"n_{s}"] == 0:
            raise ValueError(
                f"data.source={plan.cfg.source!r}: the {s} split is empty ({docs} documents split by "
                f"a hash of their text with val_fraction={plan.cfg.val_fraction}, test_fraction="
                f"{plan.cfg.test_fraction}); give more documents or larger fractions"
            )


def prepare_dataset(cfg: DataConfig, store: Store, storage_options: dict | None = None) -> str:
    """Tokenise and split the source once, in this process; returns the data artifact's store path.

    The same pieces and artifact as tasks/tokenize.py's Ray Data job, which runs them on a cluster.
    """
    opts = storage_options if storage_options is not None else store.options
    rel = corpus_rel(cfg, opts)
    if store.has(rel):
        return rel
    plan = make_plan(cfg, store, opts)
    tokenize_here(plan, plan.todo())
    return commit_dataset(plan)


def tokenize_here(plan: Plan, pieces: list[int]) -> int:
    """Tokenise these pieces one after another in this process; returns the tokens written."""
    return sum(piece_tokens(tokenize_piece(plan, i)) for i in pieces)


def piece_tokens(marker: dict) -> int:
    """Tokens a finished piece wrote, over its splits (from its marker)."""
    return sum(marker[s]["tokens"] for s in SPLITS)


# ----------------------------------------------------------------------------- reading


def _write_shards(folder: Path, split: str, tokens: np.ndarray) -> list[str]:
    """Shards of an in-memory token array (synthetic data artifacts, asymptote.distill)."""
    names = []
    for i, start in enumerate(range(0, max(1, len(tokens)), SHARD_TOKENS)):
        name = f"{split}_{i:05d}.bin"
        tokens[start : start + SHARD_TOKENS].tofile(folder / name)
        names.append(name)
    return names


def _read_split(folder: Path, meta: dict, split: str) -> np.ndarray:
    names = meta.get(f"{split}_shards") or []
    if not names:
        return np.zeros(0, dtype=meta["dtype"])
    return np.concatenate([np.fromfile(folder / n, dtype=meta["dtype"]) for n in names])


def load_split(store: Store, rel: str, split: str) -> np.ndarray:
    """The tokens of one split (train, val or test) of a data artifact, verified; empty if absent."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: allowed: {', '.join(SPLITS)}")
    folder = store.localize(rel)
    return _read_split(folder, json.loads((folder / "meta.json").read_text()), split)


def load_meta(store: Store, rel: str) -> dict:
    return json.loads(store.read(rel, "meta.json"))


def load_tokenizer(store: Store, rel: str):
    """The tokenizer of an artifact (data, synthetic data, run, soup): what decodes a model trained on it."""
    meta = store.manifest(rel).meta
    text = store.read(rel, "tokenizer.json").decode() if meta.get("tokenizer_file") else None
    return tokenizer_from_meta(meta, text)


def carry_tokenizer(store: Store, src_rel: str, folder: Path) -> dict:
    """Copy src_rel's tokenizer (tokenizer.json, if it has one) into `folder`, an artifact being
    written, and return the manifest fields that name it: a model or derived data artifact then
    decodes on its own, wherever it is copied, without finding the corpus it came from."""
    meta = store.manifest(src_rel).meta
    fields = {"tokenizer": meta.get("tokenizer", "byte"), "tokenizer_file": None}
    if meta.get("tokenizer_file"):
        (folder / "tokenizer.json").write_bytes(store.read(src_rel, "tokenizer.json"))
        fields["tokenizer_file"] = "tokenizer.json"
    return fields


def load_dataset(
    store: Store, rel: str, max_train_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train, val, meta) token arrays of a data artifact, verified; train cut to the token budget."""
    folder = store.localize(rel)
    meta = json.loads((folder / "meta.json").read_text())
    train, val = _read_split(folder, meta, "train"), _read_split(folder, meta, "val")
    if max_train_tokens is not None:
        if max_train_tokens > len(train):
            raise ValueError(
                f"data.max_train_tokens={max_train_tokens} exceeds the {len(train)} training tokens "
                "of the corpus; lower it or use a larger corpus"
            )
        train = train[:max_train_tokens]
    return train, val, meta
