"""The scaling study's report: markdown tables, PNG plots and the headline figures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from asymptote.fits import MAX_EXPONENT
from asymptote.refs import DataRef
from asymptote.scaling_analysis import Analysis, StudyData
from asymptote.tasks.reports import md_table

PLOTS = {
    "loss-vs-params.png": "plot_loss_vs_params",
    "loss-vs-members.png": "plot_loss_vs_members",
    "loss-vs-epochs.png": "plot_loss_vs_epochs",
    "loss-vs-tokens.png": "plot_data_scaling",
}


def _interval(ci: list | None) -> str:
    return (
        "n/a"
        if not ci or ci[0] is None
        else f"[{ci[0]:.4f}, {ci[1] if ci[1] is not None else float('inf'):.4f}]"
    )


def figures(data: StudyData, analysis: Analysis) -> dict[str, Any]:
    """The headline numbers: asymptotes with intervals, loss per K, multipliers and the checks."""
    fit = analysis.fits
    out: dict[str, Any] = {}
    for name, key in (("standard", "standard_N"), ("regularized", "regularized_N"), ("joint", "joint_N")):
        f = fit.get(key)
        out[f"{name}_asymptote"] = f.asymptote if f else None
        out[f"{name}_asymptote_ci"] = f.ci() if f and f.ok else None
    out["loss_per_k"] = {s.label: s.ensemble.get("logits", []) for s in data.sizes}
    out["loss_per_k_probs"] = {s.label: s.ensemble.get("probs", []) for s in data.sizes}
    out["data_efficiency"] = {
        name: {k: m.get(k) for k in ("value", "ci", "reachable")} for name, m in analysis.multipliers.items()
    }
    return out | analysis.checks


def _plots(data: StudyData, analysis: Analysis, sweep_label: str, prefix: str) -> dict[str, bytes]:
    from asymptote import scaling_plots

    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in PLOTS.items():
            path = Path(tmp) / name
            args = (data, path, sweep_label) if name == "loss-vs-epochs.png" else (data, analysis, path)
            getattr(scaling_plots, fn)(*args)
            files[prefix + name] = path.read_bytes()
    return files


def _size_rows(data: StudyData) -> list[dict]:
    return [
        {
            "size": s.label,
            "params": s.params,
            "standard": s.standard,
            "regularized": s.regularized,
            "member mean": sum(s.members) / len(s.members) if s.members else "",
            f"ensemble K={len(s.members)} (logits)": s.ensemble.get("logits", [""])[-1],
            f"ensemble K={len(s.members)} (probs)": s.ensemble.get("probs", [""])[-1],
        }
        for s in data.sizes
    ]


def _fit_note(p: dict) -> str:
    """Flag fits that hit a bound: their asymptote is not a power law's, just the points' floor."""
    if p["A"] == 0 or p["alpha"] == 0:
        return "flat: the loss does not fall with x here, so the asymptote is the points' level"
    if p["alpha"] >= MAX_EXPONENT * (1 - 1e-6):
        return f"exponent at its bound ({MAX_EXPONENT:g}): the points do not follow a power law"
    return ""


def _fit_rows(analysis: Analysis) -> list[dict]:
    rows = []
    ci = next((f"{f.params['level']:.0%} CI" for f in analysis.fits.values() if f.ok), "CI")
    for name, f in analysis.fits.items():
        if f.ok:
            p = f.params
            rows.append(
                {
                    "fit": name,
                    "A": f"{p['A']:.4g}",
                    "exponent": f"{p['alpha']:.4g}",
                    "asymptote": p["E"],
                    ci: _interval(p["ci"]["E"]),
                    "points": p["n_points"],
                    "note": _fit_note(p),
                }
            )
        else:
            rows.append(
                {
                    "fit": name,
                    "A": "",
                    "exponent": "",
                    "asymptote": "not fitted",
                    ci: "",
                    "points": "",
                    "note": f.reason,
                }
            )
    return rows


def render(
    config, data: DataRef, searches, measured: StudyData, analysis: Analysis, prefix: str = "", level: int = 1
) -> tuple[str, dict[str, bytes]]:
    """(markdown, files): the report with its plots named prefix + <plot>.png and study.json."""
    h = "#" * level
    sweep_label = config.sweep_label
    files = _plots(measured, analysis, sweep_label, prefix)
    mult = [
        {
            "target": n,
            "times the base budget": m.get("value") if m.get("value") is not None else "unreachable",
            "CI": _interval(m.get("ci")),
            "note": m.get("reason", ""),
        }
        for n, m in analysis.multipliers.items()
    ]
    search_rows = [
        {
            "size": r.size,
            "recipe": r.recipe,
            "tokens": r.budget,
            "lr": f"{r.best['lr']:g}",
            "wd": f"{r.best['weight_decay']:g}",
            "epochs": f"{r.best['epochs']:g}",
            "loss": r.loss,
            "certified": r.certified,
            "points": r.points,
        }
        for r in searches
    ]
    eff = [{"tokens": b, "standard best": v} for b, v in sorted(measured.efficiency.items())]
    noise = f"{analysis.seed_noise:.4f}" if analysis.seed_noise is not None else "n/a (K < 2)"
    md = [
        f"{h} Pre-training under infinite compute: {config.name}",
        f"Token budget D = {config.tokens:,} of `{data.uri}`; {len(config.sizes)} sizes; K = "
        f"{config.ensemble.members} members; seed-to-seed noise {noise} nats.",
        f"{h}# Searches (certified coordinate descent)",
        md_table(search_rows),
        f"{h}# Losses per size",
        md_table(_size_rows(measured)),
        f"{h}# Fits L = A / x^exponent + asymptote",
        md_table(_fit_rows(analysis)),
        f"{h}# Data efficiency of the standard recipe",
        md_table(eff),
        md_table(mult),
        f"{h}# Checks",
        md_table([{k: ("n/a" if v is None else v) for k, v in analysis.checks.items()}]),
        *[f"![{n}]({n})" for n in files],
    ]
    files[prefix + "study.json"] = json.dumps(
        {"study": measured.model_dump(), "analysis": analysis.model_dump()}, indent=1, default=str
    ).encode()
    return "\n\n".join(md) + "\n", files
