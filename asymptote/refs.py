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
