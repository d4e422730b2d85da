"""Small typed, serialisable references to what the pipeline made: what flows and tasks return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DataRef(BaseModel):
    """A prepared, tokenised corpus in the store."""

    rel: str
    """Store-relative path (data/<key>)."""
    uri: str
    """Full URI of the artifact folder."""
    n_train: int
    n_val: int
    source_sha256: str
    n_test: int = 0
    """Tokens of the test split (every reported figure; 0 when data.test_fraction is 0)."""
    tokenizer: str = "byte"
    """byte or bpe; a BPE's tokenizer.json sits in the artifact and travels with every run on it."""
    vocab_size: int = 256
    bytes_per_token: dict[str, float | None] = Field(default_factory=dict)
    """UTF-8 bytes per token of each split: bits per byte = bits per token / bytes per token."""


def data_ref(store: Any, rel: str) -> DataRef:
    """The reference to a committed data artifact (real or synthetic), read from its manifest.

    The one builder every flow and task uses; `store` is an `asymptote.store.Store`."""
    meta = store.manifest(rel).meta
    return DataRef(
        rel=rel,
        uri=store.uri(rel),
        n_train=meta["n_train"],
        n_val=meta["n_val"],
        n_test=meta.get("n_test", 0),
        source_sha256=meta["source_sha256"],
        tokenizer=meta.get("tokenizer", "byte"),
        vocab_size=meta.get("vocab_size", 256),
        bytes_per_token=meta.get("bytes_per_token") or {},
    )


class RunRef(BaseModel):
    """A finished training run in the store."""

    key: str
    name: str
    rel: str
    """Store-relative path (runs/<key>)."""
    uri: str
    weights_uri: str
    summary: dict[str, Any] = Field(default_factory=dict)
    """Final metrics: val_loss, train_loss, params, tokens, steps, wall_s, ..."""

    @property
    def val_loss(self) -> float:
        return float(self.summary["val_loss"])
