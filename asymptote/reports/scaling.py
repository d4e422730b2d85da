"""The scaling study's report: markdown tables and PNG plots (the headline figures are
`asymptote.scaling_analysis.figures`, computed with the result). Pure: no Prefect or Ray."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from asymptote import scaling_plots
from asymptote.planner import design_of
from asymptote.refs import DataRef
from asymptote.reports import Report, md_table
from asymptote.scaling_config import Analysis, ScalingStudyConfig, ScalingStudyResult, StudyData
from asymptote.store import Store

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


def _plots(
    data: StudyData, analysis: Analysis, sweep_label: str, prefix: str
) -> tuple[dict[str, bytes], list[dict]]:
    """(files, what the plots drew from fits: recorded in study.json for asymptote.report_check)."""
    files, drawn = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in PLOTS.items():
            path = Path(tmp) / name
            args = (data, path, sweep_label) if name == "loss-vs-epochs.png" else (data, analysis, path)
            drew = getattr(scaling_plots, fn)(*args)
            drawn += [d | {"plot": prefix + name} for d in drew]
            files[prefix + name] = path.read_bytes()
    return files, drawn


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{float(np.mean(values)):.4f} +- {sd:.4f} (n={len(values)})"


def _size_rows(data: StudyData) -> list[dict]:
    return [
        {
            "size": s.label,
            "params": s.params,
            "standard (test)": _mean_sd(s.standard),
            "regularized (test)": _mean_sd(s.regularized),
            "tuned wd": f"{s.regularized_wd:g}",
            "member (test)": _mean_sd(s.members),
            f"ensemble K={len(s.members)} logits": s.ensemble.get("logits", [""])[-1],
            f"ensemble K={len(s.members)} probs": s.ensemble.get("probs", [""])[-1],
        }
        for s in data.sizes
    ]


def _fit_rows(analysis: Analysis) -> list[dict]:
    """Identified fits with their numbers; the others say why, without numbers that read as results."""
    rows = []
    for name, f in analysis.fits.items():
        if f.identified:
            p = f.params
            rows.append(
                {
                    "fit": name,
                    "asymptote": f"{p['E']:.4f}",
                    "95% CI": _interval(p["ci"]["E"]),
                    "exponent": f"{p['alpha']:.3g} {_interval(p['ci']['alpha'])}",
                    "points": p["n_points"],
                    "note": f"noise widened x{p['inflation']:.2f} for lack of fit"
                    if p["inflation"] > 1
                    else "",
                }
            )
        else:
            why = f.params.get("reason") if f.ok else f.reason
            rows.append(
                {
                    "fit": name,
                    "asymptote": "not identified",
                    "95% CI": "",
                    "exponent": "",
                    "points": f.params.get("n_points", ""),
                    "note": why,
                }
            )
    return rows


def _claim_rows(analysis: Analysis) -> list[dict]:
    def num(v):
        return "unbounded" if v is None else f"{v:.4g}"

    return [
        {
            "claim": name,
            "paper's direction": c.direction,
            "estimate": num(c.estimate) if c.identified else "n/a",  # no numbers from unidentified fits
            "95% CI": f"[{num(c.ci[0])}, {num(c.ci[1])}]"
            if c.identified and c.p_direction is not None
            else "",
            "p_direction": f"{c.p_direction:.3f}" if c.identified and c.p_direction is not None else "",
            "verdict": "supported" if c.supported else _unsupported(c),
            "note": c.note,
        }
        for name, c in analysis.claims.items()
    ]


def _unsupported(c) -> str:
    """The verdict of a claim that is not supported: why it has no verdict when it has none."""
    if c.identified:
        return "not supported"
    return "at grid edge: not identified" if c.note.startswith("at grid edge") else "not identified"


def _needs_larger(analysis: Analysis) -> str:
    """What this run could not identify, said plainly (a choice at its grid's edge needs a wider grid,
    not a larger run)."""
    edge = [n for n, c in analysis.claims.items() if not c.identified and c.note.startswith("at grid edge")]
    missing = [n for n, c in analysis.claims.items() if not c.identified and n not in edge]
    if not missing and not edge:
        return ""
    judged = [n for n, c in analysis.claims.items() if c.identified]
    out = "Judged at this scale: " + ", ".join(judged) + ". " if judged else ""
    if missing:
        out += (
            "Not identified at this scale (no verdict): "
            + ", ".join(missing)
            + ". They need a larger run: at least 4 sizes (5 recommended) and K >= 4 members for identified "
            "fits, 4 token budgets for L(D), and >= 2 seeds per optimum (recipe scaling-tiny does this on CPU). "
        )
    if edge:
        out += (
            "At a grid edge (no verdict): " + ", ".join(edge) + ". They need a search grid that extends "
            "past the chosen value (see each note)."
        )
    return out.strip()


def render(
    config: ScalingStudyConfig,
    data: DataRef,
    searches,
    measured: StudyData,
    analysis: Analysis,
    prefix: str = "",
    level: int = 1,
) -> tuple[str, dict[str, bytes]]:
    """(markdown, files): the report with its plots named prefix + <plot>.png and study.json."""
    h = "#" * level
    sweep_label = config.sweep_label
    files, drawn = _plots(measured, analysis, sweep_label, prefix)
    mult = [
        {
            "target": n,
            "times the base budget": m.get("value")
            if m.get("value") is not None
            else ("unreachable" if m.get("reachable") is False else "n/a"),
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
    eff = [
        {"tokens": b, "standard, best size (test)": _mean_sd(v)}
        for b, v in sorted(measured.efficiency.items())
    ]
    noise = f"{analysis.seed_noise:.4f}" if analysis.seed_noise is not None else "n/a (one seed)"
    md = [
        f"{h} Pre-training under infinite compute: {config.name}",
        f"Token budget D = {config.tokens:,} of `{data.uri}`; {len(config.sizes)} sizes; {config.seeds} seeds per "
        f"certified optimum; K = {config.ensemble.members} members; seed-to-seed noise {noise} nats. Every choice "
        f"was made on the validation split; every loss below is on the {measured.split} split.",
        f"{h}# Verdicts (supported only where p_direction >= {config.fits.supported_p:g})",
        "p_direction: the share of bootstrap draws that go the paper's way (1.0: every draw does; it is "
        "not a p-value).",
        md_table(_claim_rows(analysis)),
        _needs_larger(analysis),
        f"{h}# Searches (certified coordinate descent, validation loss)",
        md_table(search_rows),
        f"{h}# Test losses per size",
        md_table(_size_rows(measured)),
        f"{h}# Fits L = A / x^exponent + asymptote (intervals from the seed noise)",
        md_table(_fit_rows(analysis)),
        f"{h}# Data efficiency of the standard recipe",
        md_table(eff),
        md_table(mult),
        *[f"![{n}]({n})" for n in files],
    ]
    files[prefix + "study.json"] = json.dumps(
        {
            "study": measured.model_dump(),
            "analysis": analysis.model_dump(),
            "design": design_of(config, searches, {s.label: s.params for s in measured.sizes}).model_dump(),
            "fit_config": config.fits.model_dump(),
            "plotted": drawn,
        },
        indent=1,
        default=str,
    ).encode()
    return "\n\n".join(md) + "\n", files


def report(
    config: ScalingStudyConfig, result: ScalingStudyResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    r = result
    markdown, files = render(config, r.data, r.searches, r.study, r.analysis, prefix=prefix, level=level)
    return Report(markdown, files, r.figures)


def summary(result: ScalingStudyResult) -> tuple[dict, str]:
    """The figures and one line for the CLI (the per-K curves left out of the line)."""
    shown = ", ".join(f"{k} {v}" for k, v in result.figures.items() if not k.startswith("loss_per_k"))
    return result.figures, shown


def table(result: ScalingStudyResult) -> list[dict]:
    """The headline rows: each asymptote and each of the paper's claims with its 95% interval (test
    split); None where the fit behind it is not identified."""
    f = result.figures
    rows = [
        {"figure": f"{name} asymptote", "estimate": f[f"{name}_asymptote"], "ci": f[f"{name}_asymptote_ci"]}
        for name in ("standard", "regularized", "joint")
    ]
    rows += [
        {
            "figure": name,
            "estimate": c["estimate"],
            "ci": c["ci"],
            "p_direction": c["p_direction"],
            "supported": c["supported"],
        }
        for name, c in f["claims"].items()
    ]
    return [_with_interval(r) for r in rows]


def _with_interval(row: dict) -> dict:
    low, high = row.pop("ci") or (None, None)
    return {"p_direction": None, "supported": None} | row | {"ci_low": low, "ci_high": high}
