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


def place_labels(ax, points: list[tuple[float, float, str]], fontsize: float = 7) -> None:
    """Name each point with a label that overlaps no other label and no other point, inside the axes.

    Greedy, in display pixels: each label tries offsets around its point (right-above first, then
    below, left, then further up and down) and takes the first free one; a label that had to move
    away from its point gets a thin leader line. Call it after the points are drawn and the limits
    set (positions are read from the axes' current transform)."""
    fig = ax.figure
    ax.autoscale_view()
    px = fig.dpi / 72.0
    height = fontsize * 1.3 * px
    xy = [ax.transData.transform((x, y)) for x, y, _ in points]
    placed: list[tuple[float, float, float, float]] = []
    markers = [(x - 4 * px, y - 4 * px, x + 4 * px, y + 4 * px) for x, y in xy]
    for (x, y), (_, _, text), (data_x, data_y, _) in sorted(
        zip(xy, points, points, strict=True), key=lambda t: -t[0][1]
    ):
        width = len(text) * fontsize * 0.62 * px
        for dx, dy in _offsets(width / px, fontsize):
            box = (x + dx * px, y + dy * px, x + dx * px + width, y + dy * px + height)
            others = [m for m in markers if not _contains(m, x, y)]
            inside = (
                ax.bbox.x0 <= box[0]
                and box[2] <= ax.bbox.x1
                and ax.bbox.y0 <= box[1]
                and box[3] <= ax.bbox.y1
            )
            if inside and not any(_overlap(box, b) for b in placed + others):
                break
        placed.append(box)
        leader = abs(dy) > fontsize * 1.5 or dx < 0
        ax.annotate(
            text,
            (data_x, data_y),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=fontsize,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if leader else None,
        )


def _offsets(width_pt: float, fontsize: float) -> list[tuple[float, float]]:
    step = fontsize * 1.4
    near = [(3, 3), (3, -step), (-width_pt - 3, 3), (-width_pt - 3, -step)]
    far = [(3, sign * step * j) for j in range(2, 9) for sign in (1, -1)]
    return near + far


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _contains(box, x, y) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]
