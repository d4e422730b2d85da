"""PNG plots of a scaling study (matplotlib, headless): loss against parameters, members, epochs, tokens."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asymptote.fits import PowerLaw  # noqa: E402
from asymptote.scaling_analysis import Analysis, FitOutcome, StudyData  # noqa: E402

COLORS = {"standard": "tab:red", "regularized": "tab:blue", "ensemble": "tab:green", "probs": "tab:olive"}


def _law(fit: FitOutcome | None) -> PowerLaw | None:
    return (
        PowerLaw(fit.params["A"], fit.params["alpha"], fit.params["E"])
        if fit is not None and fit.ok
        else None
    )


def _curve(ax, fit: FitOutcome | None, x, color: str, label: str) -> None:
    """The fitted law over (and beyond) the data, and its asymptote with its interval as a band."""
    law = _law(fit)
    if law is None:
        return
    xs = np.geomspace(min(x), max(x) * 30, 200)
    ax.plot(xs, law(xs), "-", color=color, lw=1)
    lo, hi = fit.ci("E")
    ax.axhline(law.E, color=color, ls="--", lw=1, label=f"{label} asymptote {law.E:.3f}")
    ax.axhspan(lo, hi, color=color, alpha=0.12)


def _focus(ax, values) -> None:
    """Frame the measured losses (a wide interval band must not squash them into a line)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if finite:
        lo, hi = min(finite), max(finite)
        pad = max(0.1 * (hi - lo), 0.02)
        ax.set_ylim(lo - pad, hi + pad)


def _save(fig, path: str | Path, ax, xlabel: str, title: str) -> None:
    ax.set(xlabel=xlabel, ylabel="validation loss (nats/token)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_loss_vs_params(data: StudyData, analysis: Analysis, path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    n = [s.params for s in data.sizes]
    for recipe in ("standard", "regularized"):
        ax.plot(
            n, [getattr(s, recipe) for s in data.sizes], "o", color=COLORS[recipe], label=f"{recipe} (best)"
        )
        _curve(ax, analysis.fits.get(f"{recipe}_N"), n, COLORS[recipe], recipe)
    ens = [(s.params, s.ensemble["logits"][-1]) for s in data.sizes if s.ensemble.get("logits")]
    if ens:
        ax.plot(
            *zip(*ens, strict=False),
            "s",
            color=COLORS["ensemble"],
            label=f"ensemble of {len(data.sizes[0].members)}",
        )
    _curve(ax, analysis.fits.get("joint_N"), n, COLORS["ensemble"], "joint (N, K -> inf)")
    asymptotes = [
        analysis.fits[k].asymptote for k in ("standard_N", "regularized_N", "joint_N") if k in analysis.fits
    ]
    _focus(
        ax,
        [s.standard for s in data.sizes]
        + [s.regularized for s in data.sizes]
        + [v for _, v in ens]
        + asymptotes,
    )
    ax.set_xscale("log")
    _save(fig, path, ax, "parameters N", f"loss vs parameters at {data.base_budget:,} tokens")


def plot_loss_vs_members(data: StudyData, analysis: Analysis, path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    cmap = plt.get_cmap("viridis", max(2, len(data.sizes)))
    for i, s in enumerate(data.sizes):
        for how, style in (("logits", "o-"), ("probs", "x:")):
            curve = s.ensemble.get(how, [])
            if curve:
                ax.plot(
                    range(1, len(curve) + 1),
                    curve,
                    style,
                    color=cmap(i),
                    ms=4,
                    label=f"{s.label} ({how})" if how == "logits" or i == 0 else None,
                )
        law = _law(analysis.fits.get(f"ensemble_K/{s.label}"))
        if law is not None:
            ax.axhline(law.E, color=cmap(i), ls="--", lw=0.8)
    _focus(ax, [v for s in data.sizes for c in s.ensemble.values() for v in c])
    ax.set_xscale("log")
    _save(fig, path, ax, "ensemble members K", "loss vs members (dashed: fitted asymptote C)")


def plot_loss_vs_epochs(data: StudyData, path: str | Path, label: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for recipe, name in (("standard", "WD fixed (standard)"), ("regularized", "WD tuned (regularized)")):
        curve = data.sweep.get(recipe, {})
        if curve:
            epochs = sorted(curve)
            ax.plot(epochs, [curve[e] for e in epochs], "o-", color=COLORS[recipe], label=name)
    ax.set_xscale("log", base=2)
    _save(fig, path, ax, "epochs", f"loss vs epochs {label}".strip())


def plot_data_scaling(data: StudyData, analysis: Analysis, path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    budgets = sorted(data.efficiency)
    if budgets:
        ax.plot(
            budgets,
            [data.efficiency[b] for b in budgets],
            "o",
            color=COLORS["standard"],
            label="standard recipe",
        )
        _curve(ax, analysis.fits.get("standard_D"), budgets, COLORS["standard"], "standard L(D)")
    targets = [m.get("target_loss") for m in analysis.multipliers.values()]
    _focus(ax, [data.efficiency[b] for b in budgets] + targets)
    for name, color in (("regularized", COLORS["regularized"]), ("joint", COLORS["ensemble"])):
        target = analysis.multipliers.get(name, {}).get("target_loss")
        if target is not None:
            ax.axhline(target, color=color, ls=":", lw=1, label=f"{name} asymptote")
    ax.set_xscale("log")
    _save(fig, path, ax, "training tokens D", "data scaling of the standard recipe")
