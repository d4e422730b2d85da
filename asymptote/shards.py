"""Token shards in the store: text is tokenised once, keyed by its content hash, and reused.

data/<key>/meta.json        tokenizer, dtype, counts, the source and its sha256
data/<key>/train_00000.bin  raw token ids (uint8 for bytes, uint16 for vocabularies up to 65536)
data/<key>/val_00000.bin
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import fsspec
import numpy as np

from asymptote.config import DataConfig, stable_hash
from asymptote.data import BUILTIN_SOURCES, content_hash, get_tokenizer, read_source, split_tokens
from asymptote.store import Store

SHARD_TOKENS = 1 << 27  # 128M tokens per shard file
_FINGERPRINTS: dict[tuple, str] = {}


def source_fingerprint(source: str, storage_options: dict | None = None) -> str:
    """A cheap, machine-independent identity of the source's content.

    Local files are hashed (memoised per process by path, size and mtime); remote objects use
    their ETag and size, which the object store maintains; builtins hash their text.
    """
    if source in BUILTIN_SOURCES or source.startswith("builtin:"):
        return content_hash(read_source(source))
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    if not fs.exists(path):
        raise FileNotFoundError(f"data.source={source!r} does not exist; give a text file, a folder or a URI")
    paths = sorted(p for p in fs.find(path) if p.endswith(".txt")) if fs.isdir(path) else [path]
    parts = [_fingerprint_one(fs, p) for p in paths]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fingerprint_one(fs, path: str) -> str:
    info = fs.info(path)
    if "file" not in fs.protocol and "local" not in fs.protocol:
        etag = info.get("ETag") or info.get("etag") or info.get("checksum")
        return f"{path}:{info.get('size')}:{etag}"
    st = os.stat(path)
    memo = (path, st.st_size, st.st_mtime_ns)
    if memo not in _FINGERPRINTS:
        _FINGERPRINTS[memo] = content_hash(Path(path).read_bytes())
    return _FINGERPRINTS[memo]


def dataset_key(cfg: DataConfig, fingerprint: str) -> str:
    return stable_hash({"source": fingerprint, "tokenizer": cfg.tokenizer, "val_fraction": cfg.val_fraction})


def _write_shards(folder: Path, split: str, tokens: np.ndarray) -> list[str]:
    names = []
    for i, start in enumerate(range(0, max(1, len(tokens)), SHARD_TOKENS)):
        name = f"{split}_{i:05d}.bin"
        tokens[start : start + SHARD_TOKENS].tofile(folder / name)
        names.append(name)
    return names


def prepare_dataset(cfg: DataConfig, store: Store, storage_options: dict | None = None) -> str:
    """Tokenise and split the source once; returns the store-relative path of the data artifact."""
    rel = f"data/{dataset_key(cfg, source_fingerprint(cfg.source, storage_options))}"
    if store.has(rel):
        return rel
    blob = read_source(cfg.source, storage_options)
    tok = get_tokenizer(cfg.tokenizer)
    train, val = split_tokens(tok.encode(blob).astype(tok.dtype), cfg.val_fraction)
    meta = {
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "dtype": np.dtype(tok.dtype).name,
        "source": cfg.source,
        "source_sha256": content_hash(blob),
        "val_fraction": cfg.val_fraction,
        "n_train": int(len(train)),
        "n_val": int(len(val)),
    }
    with store.writer(rel, kind="data", meta=meta) as folder:
        meta["train_shards"] = _write_shards(folder, "train", train)
        meta["val_shards"] = _write_shards(folder, "val", val)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return rel


def load_dataset(
    store: Store, rel: str, max_train_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train, val, meta) token arrays of a data artifact, verified; train cut to the token budget."""
    folder = store.localize(rel)
    meta = json.loads((folder / "meta.json").read_text())

    def read(names):
        return np.concatenate([np.fromfile(folder / n, dtype=meta["dtype"]) for n in names])

    train, val = read(meta["train_shards"]), read(meta["val_shards"])
    if max_train_tokens is not None:
        if max_train_tokens > len(train):
            raise ValueError(
                f"data.max_train_tokens={max_train_tokens} exceeds the {len(train)} training tokens "
                "of the corpus; lower it or use a larger corpus"
            )
        train = train[:max_train_tokens]
    return train, val, meta
