"""The soups study's report: every model's held-out and test loss, the gains over the best single
fine-tune with their intervals, the basin probe, the fine-tunes, and two plots (held-out against test
loss of every model; the loss along the interpolation segments).

Every split is named by its real name (result.split, result.ood_split): "test" only for a test split;
held-out is part of the validation split."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from asymptote.plots import place_labels, plot_segments, plt
from asymptote.reports import Report, md_table, shift_headings
from asymptote.soups_config import SoupEntry, SoupStudyConfig, SoupStudyResult
from asymptote.store import Store


def _rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    names, split, ood = _short_names(result), result.split, f"OOD {result.ood_split or 'test'}"
    rows = []
    for e in result.entries:
        used = (
            [f"{names.get(k, k)}:{w:.2f}" for k, w in e.weights.items() if w > 0]
            if e.kind != "ingredient"
            else []
        )
        extra = f"scale {e.info['scale']}" if "scale" in e.info else ""
        rows.append(
            {
                "model": names.get(e.name, e.name),
                "kind": e.kind,
                "held-out (validation)": e.heldout,
                split: e.test,
                ood: e.ood_test if e.ood_test is not None else "",
                "weights": " ".join(used) if len(used) <= 8 else f"{len(used)} ingredients",
                "notes": extra,
            }
        )
    return rows


def _short_names(result: SoupStudyResult) -> dict[str, str]:
    return {ft.run.rel: f"ft-{i}" for i, ft in enumerate(result.finetunes)}


def gain_cell(g: dict | None) -> str:
    """A gain as `+0.0100 [+0.0050, +0.0150] p_direction=0.999 better`."""
    if not g:
        return ""
    return (
        f"{g['estimate']:+.4f} [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}] "
        f"p_direction={g['p_direction']:.3f} {g['verdict']}"
    )


def _gain_rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    """Per soup and merge: its gain over the best single (and OOD), interval, p_direction and verdict."""
    ood = f"OOD {result.ood_split or 'test'} gain"
    return [
        {
            "model": e.name,
            "kind": e.kind,
            f"{result.split} gain": gain_cell(e.gain),
            ood: gain_cell(e.ood_gain),
        }
        for e in result.entries
        if e.kind in ("soup", "merge")
    ]


def _probe_rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    return [
        {
            "rung": i,
            "lr": f"{r.lr:.2e}",
            "of base lr": f"{r.lr_fraction:.3g}",
            "held-out along the line": " ".join(f"{p['heldout']:.4f}" for p in r.segment.points),
            "barrier": f"{r.segment.check['barrier']:+.4f}",
            "midpoint gain": f"{r.segment.check['midpoint_gain']:+.4f}",
            "soups": r.segment.check["soups"],
        }
        for i, r in enumerate(result.probe)
    ]


def _finetune_rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    return [
        {
            "fine-tune": f"ft-{i}",
            "lr": f"{ft.hparams['lr']:.2e}",
            "weight_decay": f"{ft.hparams['weight_decay']:.3f}",
            "length": ft.hparams.get("max_steps", ft.hparams.get("epochs")),
            "seed": ft.hparams["seed"],
            "steps": ft.run.summary.get("steps"),
            "run": f"`{ft.run.rel}`",
        }
        for i, ft in enumerate(result.finetunes)
    ]


def _figures(config: SoupStudyConfig, result: SoupStudyResult, plot_name: str) -> dict[str, bytes]:
    segments_png = plot_name.replace("heldout-vs-test", "interpolation")
    with tempfile.TemporaryDirectory() as tmp:
        plot_heldout_vs_test(
            result.entries, Path(tmp) / plot_name, f"{config.name}: held-out vs {result.split}", result.split
        )
        files = {plot_name: (Path(tmp) / plot_name).read_bytes()}
        if result.segments:
            plot_segments(
                [g.model_dump() for g in result.segments], Path(tmp) / segments_png, f"{config.name}: "
            )
            files[segments_png] = (Path(tmp) / segments_png).read_bytes()
    return files


def _resampled(result: SoupStudyResult) -> str:
    """What the gains' bootstrap resampled, as the gains themselves record it."""
    said = {g.get("resampled") for g in result.gains().values()} - {None}
    return "; ".join(sorted(said)) or "nothing (no gains)"


def _splits(config: SoupStudyConfig, result: SoupStudyResult) -> str:
    """Which split every figure is on, by its real name."""
    held = (
        f"Held-out: {config.soups.heldout_fraction:.0%} of the target's validation split (chunks of "
        f"{config.soups.split_chunk_windows} windows, spread evenly); every choice reads it and nothing else."
    )
    if result.split == "test":
        shown = " Figures are on the target's test split, which no choice reads."
    else:
        shown = (
            " The target has no test split: figures are on the chunks of its validation split that are "
            f"not held-out ({result.split!r} below), which no choice reads."
        )
    ood = f" OOD: the {result.ood_split} split of the base's pretraining corpus." if result.ood_split else ""
    return held + shown + ood


def _verdict(result: SoupStudyResult) -> str:
    t, best = result.test_loss(), result.best_single()
    if "greedy" not in t or best is None:
        return ""
    greedy = next(e for e in result.entries if e.name == "greedy")
    kept = sum(w > 0 for w in greedy.weights.values())
    g = greedy.gain
    return (
        f"\nGreedy soup ({kept} ingredient(s)) vs the best single fine-tune (chosen on held-out), on the "
        f"{result.split} split: {t['greedy']:.4f} vs {t['best_single']:.4f}; gain {g['estimate']:+.4f}, 95% "
        f"interval [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}] (resampled: {g['resampled']}), "
        f"p_direction = {g['p_direction']:.3f}: {g['verdict']} (a verdict only where the interval excludes "
        "0).\n"
    )


def soup_report(
    config: SoupStudyConfig, result: SoupStudyResult, store: Store, plot_name: str = "heldout-vs-test.png"
) -> tuple[str, dict[str, bytes]]:
    files = _figures(config, result, plot_name)
    sweep = f"\n### Fine-tunes\n\n{md_table(_finetune_rows(result))}\n" if result.finetunes else ""
    probe = (
        "\n### Basin probe\n\nTwo fine-tunes per rung of a learning-rate ladder down from the base's peak; "
        "held-out loss at evenly spaced points on the line between them. The first rung whose midpoint beats "
        "both ends sets the sweep's top learning rate.\n\n"
        f"{md_table(_probe_rows(result))}\n"
        if result.probe
        else ""
    )
    base = f"`{store.uri(result.base)}`" if result.base else "none (given checkpoints, no merges)"
    curves = [n for n in files if n != plot_name]
    markdown = (
        f"# Model soups: {config.name}\n\n"
        f"Target `{result.data.uri}`. {_splits(config, result)} Base: {base}.\n{_verdict(result)}\n"
        f"{md_table(_rows(result))}\n\n### Gains over the best single fine-tune\n\n"
        f"Bootstrap (asymptote.stats, {config.soups.bootstrap} draws) of {_resampled(result)}, the same "
        "windows for both models: mean gain, 95% interval, p_direction = share of draws on the "
        "estimate's side of 0. One base is one seed: the interval leaves out seed noise "
        "(`bench/soups.py` pools several bases).\n\n"
        f"{md_table(_gain_rows(result))}\n{probe}{sweep}\n"
        "- MWA weights: w_k proportional to (L_k / L_min)^(-penalty) on held-out loss, "
        f"penalty = {config.soups.mwa_penalty}.\n- Merges add scale x the merged task vector to the base; the "
        f"scale is chosen on held-out from {config.merges.scales}; SLERP joins the two best ingredients.\n"
        "- Independent members: trained from scratch with different seeds; aligned_avg permutes each onto "
        "the first by weight matching (residual stream, heads, SwiGLU units) before averaging; the "
        "ensemble averages their logits.\n"
        f"- Soups are committed under `{store.uri('soups')}` with manifests naming ingredients and "
        "weights.\n\n"
        f"![held-out vs {result.split}]({plot_name})\n"
        + "".join(f"\n![loss along the segments]({c})\n" for c in curves)
    )
    return markdown, files


def report(
    config: SoupStudyConfig, result: SoupStudyResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    markdown, files = soup_report(config, result, store, plot_name=f"{prefix}heldout-vs-test.png")
    return Report(shift_headings(markdown, level - 1), files, summary(result)[0])


def summary(result: SoupStudyResult) -> tuple[dict, str]:
    """Headline figures, with the real name of the split each is on (`loss` on `split`)."""
    losses = result.test_loss()
    figures = {"split": result.split, "loss": losses, "gain_over_best": result.gains()}
    figures |= {"ood_split": result.ood_split, "ood_loss": result.ood_test_loss()}
    return figures, f"{result.split} loss: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())


def table(result: SoupStudyResult) -> list[dict]:
    """The headline rows: each model's loss on the reported split (`split`) and, for soups and merges,
    the gain over the best single with its interval, p_direction and verdict."""
    ood, gains = result.ood_test_loss(), result.gains()
    rows = []
    for name, loss in result.test_loss().items():
        gain = gains.get(name) or {}
        low, high = gain.get("ci") or (None, None)
        rows.append(
            {"model": name, "split": result.split, "loss": loss, "ood_loss": ood.get(name)}
            | {"gain": gain.get("estimate"), "ci_low": low, "ci_high": high}
            | {"p_direction": gain.get("p_direction"), "verdict": gain.get("verdict")}
        )
    return rows


# ----------------------------------------------------------------------------- the plot


COLORS = {
    "ingredient": "tab:gray",
    "soup": "tab:blue",
    "merge": "tab:orange",
    "member": "tab:olive",
    "independent-average": "tab:red",
    "ensemble": "tab:green",
}


def plot_heldout_vs_test(
    entries: list[SoupEntry], path: str | Path, title: str = "", split: str = "test"
) -> None:
    """Held-out against reported-split (`split`) loss of every model: fine-tunes, soups and merges on the left; independent
    members, their averages and their ensemble on the right (naive averages sit far off)."""
    panels = [
        [e for e in entries if e.kind in ("ingredient", "soup", "merge")],
        [e for e in entries if e.kind in ("member", "independent-average", "ensemble")],
    ]
    panels = [p for p in panels if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), dpi=110, squeeze=False)
    for ax, group, name in zip(
        axes[0], panels, ["fine-tunes of one base", "independent members"], strict=False
    ):
        _scatter(ax, group)
        ax.set(
            xlabel="held-out loss (nats/token)", ylabel=f"{split} loss (nats/token)", title=f"{title}: {name}"
        )
    fig.tight_layout()  # labels are placed in final pixel positions, so after the layout
    for ax, group in zip(axes[0], panels, strict=False):
        _labels(ax, group)
    fig.savefig(path)
    plt.close(fig)


def _scatter(ax, entries: list[SoupEntry]) -> None:
    for kind, color in COLORS.items():
        pts = [e for e in entries if e.kind == kind]
        if pts:
            ax.scatter(
                [e.heldout for e in pts],
                [e.test for e in pts],
                c=color,
                label=kind,
                s=18 if kind in ("ingredient", "member") else 40,
                zorder=3,
            )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _labels(ax, entries: list[SoupEntry]) -> None:
    place_labels(ax, [(e.heldout, e.test, e.name) for e in entries if e.kind not in ("ingredient", "member")])
