"""The synthetic corpus: sequences sampled from the teachers, committed as a data artifact in the
shards format (asymptote.shards.load_dataset reads it like any corpus). numpy and the store only, no
torch: the driver commits what its workers sampled.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from asymptote.shards import _write_shards
from asymptote.store import Store


def save_synthetic(
    store: Store,
    rel: str,
    sequences: np.ndarray,
    corpus_meta: dict,
    val_fraction: float = 0.05,
    meta: dict | None = None,
    tokenizer_json: str | None = None,
) -> dict:
    """Commit (N, L) sampled sequences as a data artifact in the shards format (load_dataset reads it).

    Tokenizer and vocabulary are the real corpus' (corpus_meta, and its tokenizer.json, which the
    artifact carries so that a student trained on it decodes); the last val_fraction of the
    sequences form the artifact's own validation split.
    """
    n_val = max(1, int(len(sequences) * val_fraction)) if len(sequences) > 1 else 0
    train, val = (
        sequences[: len(sequences) - n_val].reshape(-1),
        sequences[len(sequences) - n_val :].reshape(-1),
    )
    meta = {
        "tokenizer": corpus_meta["tokenizer"],
        "tokenizer_file": None if tokenizer_json is None else "tokenizer.json",
        "vocab_size": corpus_meta["vocab_size"],
        "eos_id": corpus_meta.get("eos_id"),
        "dtype": np.dtype(sequences.dtype).name,
        "source_sha256": hashlib.sha256(sequences.tobytes()).hexdigest(),
        "val_fraction": val_fraction,
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "n_sequences": int(len(sequences)),
        "sequence_length": int(sequences.shape[1]),
    } | (meta or {})
    with store.writer(rel, kind="data", meta=meta) as folder:
        meta["train_shards"] = _write_shards(folder, "train", train)
        meta["val_shards"] = _write_shards(folder, "val", val)
        if tokenizer_json is not None:
            (folder / "tokenizer.json").write_text(tokenizer_json)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta
