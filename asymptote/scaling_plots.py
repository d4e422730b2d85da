"""PNG plots of a scaling study (matplotlib, headless): loss against parameters, members, epochs, tokens.

Only identified fits are drawn (a law at a bound, or one through exactly as many points as it has
parameters, is not a result). Each plot returns what it drew from a fit, one
{"plot", "what", "fit", "value", "identified"} per law or asymptote, so a report can record it and
`asymptote.report_check` can hold every drawn value to a fit that was made and identified."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asymptote.fits import PowerLaw  # noqa: E402
from asymptote.scaling_config import Analysis, FitOutcome, StudyData  # noqa: E402

COLORS = {"standard": "tab:red", "regularized": "tab:blue", "ensemble": "tab:green", "probs": "tab:olive"}


def _law(fit: FitOutcome | None) -> PowerLaw | None:
    """The fitted law when it is identified (a law that passes exactly through its points, or sits at a
    bound, is not drawn as if it were a result)."""
    if fit is None or not fit.identified:
        return None
    return PowerLaw(fit.params["A"], fit.params["alpha"], fit.params["E"])


def drawn_fit(plot: str, name: str, fit: FitOutcome | None, what: str = "asymptote") -> dict:
    """What a plot drew from fit `name`: its asymptote E (the value on the plot), identified or not."""
    return {
        "plot": plot,
        "what": what,
        "fit": name,
        "value": fit.asymptote if fit is not None else None,
        "identified": bool(fit is not None and fit.identified),
    }


def _curve(ax, fit: FitOutcome | None, x, color: str, label: str) -> bool:
    """The fitted law over (and beyond) the data, and its asymptote with its interval as an error bar
    at the right edge (a band across the plot would hide the points when the interval is wide).
    Returns whether it drew anything (only an identified fit is drawn)."""
    law = _law(fit)
    if law is None:
        return False
    right = max(x) * 30
    xs = np.geomspace(min(x), right, 200)
    ax.plot(xs, law(xs), "-", color=color, lw=1)
    lo, hi = fit.ci("E")
    pinned = (
        f"[{lo:.3f}, {hi:.3f}]" if lo > 0 else f"(95% interval reaches 0 below {hi:.3f}: not pinned down)"
    )
    ax.axhline(law.E, color=color, ls="--", lw=0.8, label=f"{label} asymptote {law.E:.3f} {pinned}")
    ax.errorbar([right], [law.E], yerr=[[law.E - lo], [hi - law.E]], fmt="_", color=color, capsize=4)
    return True


def _points(ax, x, groups, style: str, color: str, label: str) -> None:
    """Seed means with their seed-to-seed standard deviation as error bars."""
    means = [float(np.mean(g)) for g in groups]
    sds = [float(np.std(g, ddof=1)) if len(g) > 1 else 0.0 for g in groups]
    ax.errorbar(x, means, yerr=sds, fmt=style, color=color, capsize=3, ms=4, label=label)


def _focus(ax, values) -> None:
    """Frame the measured losses (a wide interval must not squash them into a line)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if finite:
        lo, hi = min(finite), max(finite)
        pad = max(0.15 * (hi - lo), 0.02)
        ax.set_ylim(lo - pad, hi + pad)


def _save(fig, path: str | Path, ax, xlabel: str, title: str) -> None:
    ax.set(xlabel=xlabel, ylabel="test loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_loss_vs_params(data: StudyData, analysis: Analysis, path: str | Path) -> list[dict]:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    n = [s.params for s in data.sizes]
    plot, drew = Path(path).name, []
    for recipe, dodge in (("standard", 0.97), ("regularized", 1.03)):  # side by side, not on top
        groups = [getattr(s, recipe) for s in data.sizes]
        _points(ax, [x * dodge for x in n], groups, "o", COLORS[recipe], f"{recipe} (mean of seeds, +-1 sd)")
        fit = analysis.fits.get(f"{recipe}_N")
        if _curve(ax, fit, n, COLORS[recipe], recipe):
            drew.append(drawn_fit(plot, f"{recipe}_N", fit, "law and asymptote"))
    ens = [(s.params, s.ensemble["logits"][-1]) for s in data.sizes if s.ensemble.get("logits")]
    if ens:
        k = len(data.sizes[0].ensemble["logits"])
        ax.plot(*zip(*ens, strict=False), "s", color=COLORS["ensemble"], ms=4, label=f"ensemble of {k}")
    if _curve(ax, analysis.fits.get("joint_N"), n, COLORS["ensemble"], "joint (N, K -> inf)"):
        drew.append(drawn_fit(plot, "joint_N", analysis.fits.get("joint_N"), "law and asymptote"))
    measured = [v for s in data.sizes for g in (s.standard, s.regularized) for v in _bar_ends(g)]
    _focus(
        ax, measured + [v for _, v in ens] + _asymptotes(analysis, ("standard_N", "regularized_N", "joint_N"))
    )
    ax.set_xscale("log")
    drawn = [k for k in ("standard_N", "regularized_N", "joint_N") if _law(analysis.fits.get(k))]
    note = "fits with 95% intervals at right" if drawn else "no L(N) fit identified: points only"
    _save(fig, path, ax, "parameters N", f"test loss vs parameters at {data.base_budget:,} tokens ({note})")
    return drew


def _bar_ends(g: list[float]) -> list[float]:
    """Both ends of a seed-mean's +-1 sd bar, so the frame shows the whole bar."""
    sd = float(np.std(g, ddof=1)) if len(g) > 1 else 0.0
    return [float(np.mean(g)) - sd, float(np.mean(g)) + sd]


def _asymptotes(analysis: Analysis, names) -> list[float]:
    return [_law(analysis.fits.get(k)).E for k in names if _law(analysis.fits.get(k))]


def plot_loss_vs_members(data: StudyData, analysis: Analysis, path: str | Path) -> list[dict]:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    cmap = plt.get_cmap("viridis", max(2, len(data.sizes)))
    drawn, drew = 0, []
    for i, s in enumerate(data.sizes):
        first = s.ensemble.get("logits", [])
        mean = s.subset_curve()
        if first:
            label = "first-k ensembles" if i == 0 and mean else None
            ax.plot(
                range(1, len(first) + 1), first, "o-", color=cmap(i), ms=3, lw=0.6, alpha=0.45, label=label
            )
        if mean:  # what the L(K) fit and the verdict use
            ci = analysis.ensemble_ci.get(s.label)
            yerr = None if not ci else np.abs(np.array(ci).T - np.array(mean)[None, :])
            ax.errorbar(
                range(1, len(mean) + 1),
                mean,
                yerr=yerr,
                fmt="s-",
                color=cmap(i),
                ms=4,
                capsize=2,
                label=f"{s.label}: mean over k-subsets" + (", 95% CI" if i == 0 and ci else ""),
            )
        elif first:
            ax.plot([], [], "o-", color=cmap(i), label=s.label)
        name = f"ensemble_K/{s.label}"
        law = _law(analysis.fits.get(name))
        if law is not None:
            ax.axhline(law.E, color=cmap(i), ls="--", lw=0.9)
            drawn += 1
            drew.append(drawn_fit(Path(path).name, name, analysis.fits.get(name)))
    values = [v for s in data.sizes for c in (s.ensemble.get("logits", []), s.subset_curve()) for v in c]
    _focus(ax, values + _asymptotes(analysis, [f"ensemble_K/{s.label}" for s in data.sizes]))
    ax.set_xscale("log")
    k_max = max((len(c) for s in data.sizes for c in s.ensemble.values()), default=1)
    ax.set_xticks(range(1, k_max + 1), [str(k) for k in range(1, k_max + 1)])
    ax.minorticks_off()
    title = (
        f"test loss vs members (dashed: fitted asymptote C, {drawn} of {len(data.sizes)} sizes)"
        if drawn
        else "test loss vs members (no L(K) fit identified: needs K >= 4 members)"
    )
    _save(fig, path, ax, "ensemble members K", title)
    return drew


def plot_loss_vs_epochs(data: StudyData, path: str | Path, label: str = "") -> list[dict]:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for recipe, name in (("standard", "WD fixed (standard)"), ("regularized", "WD tuned (regularized)")):
        curve = data.sweep.get(recipe, {})
        if curve:
            epochs = sorted(curve)
            ax.plot(epochs, [curve[e] for e in epochs], "o-", color=COLORS[recipe], label=name)
    ax.set_xscale("log", base=2)
    _save(fig, path, ax, "epochs", f"test loss vs epochs {label}".strip())
    return []  # measured points only


def fitted_targets(multipliers: dict[str, dict]) -> dict[str, float]:
    """The asymptotes a data-scaling plot may draw: only those of identified fits (an unidentified
    law's E sits at a bound, e.g. 0.0, and is not a fitted value)."""
    return {
        name: float(m["target_loss"])
        for name, m in multipliers.items()
        if m.get("identified") and m.get("target_loss") is not None
    }


def plot_data_scaling(data: StudyData, analysis: Analysis, path: str | Path) -> list[dict]:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    budgets = sorted(data.efficiency)
    plot, drew = Path(path).name, []
    if budgets:
        _points(
            ax, budgets, [data.efficiency[b] for b in budgets], "o", COLORS["standard"], "standard recipe"
        )
        fit = analysis.fits.get("standard_D")
        if _curve(ax, fit, budgets, COLORS["standard"], "standard L(D)"):
            drew.append(drawn_fit(plot, "standard_D", fit, "law and asymptote"))
    targets = fitted_targets(analysis.multipliers)
    _focus(ax, [float(np.mean(data.efficiency[b])) for b in budgets] + list(targets.values()))
    for name, color in (("regularized", COLORS["regularized"]), ("joint", COLORS["ensemble"])):
        if name in targets:
            ax.axhline(targets[name], color=color, ls=":", lw=1, label=f"{name} asymptote")
            drew.append(drawn_fit(plot, f"{name}_N", analysis.fits.get(f"{name}_N")))
    ax.set_xscale("log")
    _save(fig, path, ax, "training tokens D", "data scaling of the standard recipe (test loss)")
    return drew
