"""PNG plots for reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(metrics: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Train and validation loss against tokens seen."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    train = [(m["tokens"], m["train_loss"]) for m in metrics if m.get("train_loss") is not None]
    val = [(m["tokens"], m["val_loss"]) for m in metrics if m.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=False), label="train", lw=1.2)
    if val:
        ax.plot(*zip(*val, strict=False), "o-", label="validation", ms=3)
    ax.set(xlabel="tokens", ylabel="loss (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
