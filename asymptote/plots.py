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


def plot_segments(segments: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Loss along straight lines between two models, one panel per segment.

    Each segment is {"name", "points": [{"alpha", "heldout", "test"?, "ood"?}, ...]}; the OOD loss
    (another corpus, a different scale) goes on a second y axis so both shapes stay readable.
    """
    fig, axes = plt.subplots(1, len(segments), figsize=(5.5 * len(segments), 4), dpi=110, squeeze=False)
    for ax, seg in zip(axes[0], segments, strict=False):
        pts = seg["points"]
        alpha = [p["alpha"] for p in pts]
        for split, style in (("heldout", "o-"), ("test", "s--")):
            if all(split in p for p in pts):
                ax.plot(alpha, [p[split] for p in pts], style, ms=3, label=f"target {split}")
        if all("ood" in p for p in pts):
            ood = ax.twinx()
            ood.plot(
                alpha, [p["ood"] for p in pts], "^:", ms=3, color="tab:red", label="pretraining test (OOD)"
            )
            ood.set_ylabel("OOD loss (nats/token)", color="tab:red")
            ood.legend(fontsize=7, loc="upper right")
        ax.set(xlabel="alpha (0: start, 1: end)", ylabel="loss (nats/token)", title=f"{title}{seg['name']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
