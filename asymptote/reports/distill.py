"""Distillation reports: the study's markdown, its comparison plot, the students' learning curves and
the one-line summary the CLI prints. Pure: no Ray, no Prefect.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from asymptote.distill_config import (
    METHODS,
    PAPER_METHOD,
    DistillConfig,
    DistillResult,
    Figure,
    StudentOutcome,
    Teachers,
)
from asymptote.plots import plt
from asymptote.reports import Report, md_table, shift_headings
from asymptote.search_space import RECIPES, Point, at_edges
from asymptote.store import Store


def _fmt_kept(s: StudentOutcome) -> str:
    if s.retained is None:
        return "n/a"
    return f"{s.retained:.3f} [{s.retained_ci[0]:.3f}, {s.retained_ci[1]:.3f}]"


def _fmt_fig(f: Figure | None, digits: int = 4) -> str:
    if f is None:
        return "n/a"
    return f"{f.estimate:.{digits}f} [{f.ci[0]:.{digits}f}, {f.ci[1]:.{digits}f}]"


def role(method: str) -> str:
    """The paper's method is the reproduction; the others are this project's extensions."""
    return "the paper's method" if method == PAPER_METHOD else "extension"


def headline_order(result: DistillResult) -> list[StudentOutcome]:
    """The paper's method first, then the extensions best first."""
    return sorted(result.students.values(), key=lambda s: (s.method != result.paper_method, s.test_loss))


def comparison_rows(result: DistillResult) -> list[dict[str, Any]]:
    k, p = len(result.teachers.members), result.params
    figs = result.figures

    def loss_ci(name: str) -> str:
        return _fmt_fig(figs.get(name))

    rows = [
        {
            "model": "single",
            "kind": "single",
            "params": p,
            "seeds": result.seeds.get("single", 1),
            "test_loss": result.single_loss,
            "test_loss (95% CI)": loss_ci("single"),
            "retained": "",
        },
    ]
    if result.control is not None:
        kept = result.retained_figures.get("control")
        rows.append(
            {
                "model": f"control (no teacher, {result.control.method}'s compute)",
                "kind": "control",
                "params": p,
                "seeds": result.seeds.get("control", 1),
                "test_loss": result.control.test_loss,
                "test_loss (95% CI)": loss_ci("control"),
                "retained": _fmt_fig(kept, 3),
            }
        )
    rows.append(
        {
            "model": f"ensemble x{k}",
            "kind": "ensemble",
            "params": k * p,
            "seeds": 1,
            "test_loss": result.ensemble_loss,
            "test_loss (95% CI)": loss_ci("ensemble"),
            "retained": 1.0,
        }
    )
    for s in headline_order(result):
        rows.append(
            {
                "model": f"student: {s.method} ({role(s.method)})",
                "kind": "student",
                "params": p,
                "seeds": result.seeds.get(s.method, 1),
                "test_loss": s.test_loss,
                "test_loss (95% CI)": loss_ci(s.method),
                "retained": _fmt_kept(s),
            }
        )
    return rows


def chosen_label(config: DistillConfig, s: StudentOutcome) -> str:
    """The settings the method uses, and which searched axes ended at a grid edge (the grid may be too small)."""
    text = " ".join(f"{a}={s.point[a]:g}" for a in METHODS[s.method].axes)
    edges = student_edges(config, s)
    return text + (f" (at grid edge: {', '.join(edges)})" if edges else "")


def student_edges(config: DistillConfig, s: StudentOutcome) -> list[str]:
    """The searched axes whose choice sits on the edge of the final grid (grown when edges.extend)."""
    if s.grid:
        return list(s.at_edge)
    return at_edges(s.point, config.student.grid, config.student.axes(s.method))


def single_edges(config: DistillConfig, t: Teachers) -> list[str]:
    """The single model's searched axes at its final grid's edge (none when the teachers were given)."""
    if not t.single_point:
        return []
    if t.grid is not None:
        return list(t.at_edge)
    return at_edges(t.single_point, config.search.grid, RECIPES["regularized"])


def student_rows(config: DistillConfig, result: DistillResult) -> list[dict[str, Any]]:
    return [
        {
            "rank": i + 1,
            "student": s.method,
            "test_loss": round(s.test_loss, 4),
            "test_bpb": round(s.test_bpb, 4),
            "retained (95% CI)": _fmt_kept(s),
            "val_loss": round(s.val_loss, 4),
            "chosen": chosen_label(config, s),
            "certified": s.certified,
            "runs": s.points,
            "steps": s.steps,
            "search steps": s.search_steps,
            "synthetic tokens": s.synthetic_tokens,
        }
        for i, s in enumerate(result.ranked())
    ]


def report(
    config: DistillConfig, result: DistillResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    """The report's markdown, its comparison plot and the students' learning curves."""
    plot, curves = f"{prefix}compare.png", f"{prefix}curves.png"
    markdown = shift_headings(distill_markdown(config, result, store, plot, curves), level - 1)
    files = {plot: comparison_png(config, result), curves: curves_png(config, result)}
    return Report(markdown, files, figures(result))


def summary(result: DistillResult) -> tuple[dict, str]:
    order = [s.method for s in headline_order(result)]
    kept = ", ".join(
        f"{m}{' (paper)' if m == result.paper_method else ''} "
        f"{'n/a' if result.retained[m] is None else f'{result.retained[m]:.2f}'}"
        for m in order
    )
    control = f", control {result.control.test_loss:.4f}" if result.control else ""
    line = f"test: single {result.single_loss:.4f}{control}, ensemble {result.ensemble_loss:.4f}; retained: {kept}"
    if not result.gain_resolved:
        line += " (the ensemble's gain is within its noise)"
    return figures(result), line


def table(result: DistillResult) -> list[dict]:
    """The headline rows: the single model, the ensemble and each chosen student on test."""
    return comparison_rows(result)


def _png(draw) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plot.png"
        draw(path)
        return path.read_bytes()


def comparison_png(config: DistillConfig, result: DistillResult) -> bytes:
    k = len(result.teachers.members)
    title = f"{config.name}: single vs ensemble x{k} vs students (test)"
    return _png(lambda path: plot_comparison(comparison_rows(result), path, title=title))


def curves_png(config: DistillConfig, result: DistillResult) -> bytes:
    curves = {s.method: s.curve for s in result.ranked()}
    refs = {"single (val)": result.val["single_loss"], "ensemble (val)": result.val["ensemble_loss"]}
    return _png(lambda path: plot_curves(curves, refs, path, f"{config.name}: chosen students"))


def _gain_line(result: DistillResult) -> str:
    lo, hi = result.gain_ci
    how = result.resampled or f"{result.test_windows} test windows"
    text = (
        f"- ensemble gain on test: {result.gain:.4f} nats/token, 95% interval [{lo:.4f}, {hi:.4f}] "
        f"(hierarchical bootstrap: {how})\n"
    )
    if not result.gain_resolved:
        text += (
            "\n**The ensemble's gain over the single model is within its own noise (its interval includes 0), "
            "so no retained fraction is reported: dividing by it would be meaningless.**\n"
        )
    return text


def _edge_text(edges: list[str], extend: bool) -> str:
    if not edges:
        return ""
    why = "its hard limit stopped the grid from growing" if extend else "a larger grid may move it"
    return f"; at the grid edge on {', '.join(edges)}: {why}"


def _single_source(config: DistillConfig, result: DistillResult) -> str:
    t = result.teachers
    if not t.single_point:
        return "teachers given as runs"
    sp = Point(**t.single_point)
    span = ""
    if t.grid:
        span = "; grid " + ", ".join(f"{a} {v[0]:g}..{v[-1]:g} ({len(v)})" for a, v in t.grid.items())
    return (
        f"the single model is the regularized optimum {sp.label()} "
        f"({'certified' if t.certified else 'NOT certified (run cap)'}, {t.search_points} points{span}"
        f"{_edge_text(single_edges(config, t), config.edges.extend)}); members "
        f"at {config.ensemble.epoch_factor:g}x its epochs and {config.ensemble.weight_decay_factor:g}x its "
        "weight decay, seed = member index"
    )


def _design_lines(config: DistillConfig, result: DistillResult) -> str:
    """How the figures were made: seeds, the control, the baseline's search, grids that grow."""
    lines = [
        f"- seeds: {', '.join(f'{a} {n}' for a, n in result.seeds.items())} (the ensemble's are its "
        f"{len(result.teachers.members)} members, each its own seed, as delete-one jackknife pseudo-seeds when "
        "it has 3 or more); intervals: hierarchical bootstrap, "
        f"{result.resampled or 'test windows'}. p_direction: the share of draws on the estimate's side of "
        "its reference (a loss: the single model's; the single model's: the ensemble's; retained: 0).",
        f"- the paper's method is `{result.paper_method}` (sequence-level distillation): the reproduction. "
        + ", ".join(f"`{m}`" for m in result.students if m != result.paper_method)
        + " are this project's extensions.",
    ]
    if config.baseline.match_students and result.teachers.single_point:
        lines.append(
            "- the single model was searched as hard as the students: over their epochs, weight decays and "
            "learning-rate multiples, with their run cap"
            + (", its grid growing past a chosen edge up to the hard limits" if config.edges.extend else "")
            + "."
        )
    if result.control is not None:
        c, effect = result.control, result.teacher_effect
        lines.append(
            f"- control: no teacher, real text only, at the `{c.method}` student's settings "
            f"({' '.join(f'{k}={v:g}' for k, v in c.point.items() if k in ('epochs', 'weight_decay', 'lr_scale'))}"
            f", {c.steps} steps): test loss {_fmt_fig(result.figures.get('control'))}. What the teachers add "
            f"beyond that compute (control minus `{c.method}`): {_fmt_fig(effect)} nats"
            + (f", p_direction {effect.p_direction:.3f}" if effect else "")
            + "."
        )
    return "\n".join(lines) + "\n"


def distill_markdown(
    config: DistillConfig, result: DistillResult, store: Store, plot_name: str, curves_name: str
) -> str:
    t, k, p = result.teachers, len(result.teachers.members), result.params
    val = result.val
    links = [f"- single: `{store.uri(r)}`" for r in (t.seed_runs or [t.single])]
    if result.synthetic:
        links += [
            f"- synthetic: `{result.synthetic.uri}` ({result.synthetic_tokens:,} tokens sampled from the ensemble "
            f"at temperature {config.sampling.temperature})"
        ]
    links += [f"- student {s.method}: `{s.run.uri}`" for s in result.ranked()]
    if result.control is not None:
        links += [f"- control: `{store.uri(r)}`" for r in result.control.seed_runs]
    columns = ["model", "params", "seeds", "test_loss (95% CI)", "retained"]
    return (
        f"# Ensemble distillation: {config.name}\n\n{k} members of {p:,} parameters each "
        f"({_single_source(config, result)}); every "
        f"student has the single model's size, 1/{k} of the ensemble's {k * p:,} parameters. Every choice "
        "(the single model, each student's settings) was made on validation; the figures below are on the "
        "test split.\n\n"
        f"{md_table(comparison_rows(result), columns)}\n\n"
        f"{_gain_line(result)}"
        f"{_design_lines(config, result)}\n"
        "## Students, best first\n\n"
        f"{md_table(student_rows(config, result), list(student_rows(config, result)[0]))}\n"
        "- retained = (L_single - L_student) / (L_single - L_ensemble) on test; the paper keeps 0.83 of an "
        "8-member ensemble's gain. Steps: the chosen student's; search steps: every run its search trained.\n"
        f"- validation: single {val['single_loss']:.4f}, ensemble {val['ensemble_loss']:.4f}, first-k "
        f"ensembles {', '.join(f'{v:.4f}' for v in val['ensemble_curve'])}\n"
        + "\n".join(links)
        + f"\n\n![single vs ensemble vs students]({plot_name})\n\n![learning curves]({curves_name})\n"
    )


def figures(result: DistillResult) -> dict[str, Any]:
    return {
        "split": result.split,
        "single": result.single_loss,
        "control": result.control.test_loss if result.control else None,
        "ensemble": result.ensemble_loss,
        "members": len(result.teachers.members),
        "seeds": result.seeds,
        "gain_ci": result.gain_ci,
        "gain_resolved": result.gain_resolved,
        "paper_method": result.paper_method,
        "students": {m: s.test_loss for m, s in result.students.items()},
        "retained": result.retained,
        "retained_ci": {m: s.retained_ci for m, s in result.students.items()},
        "retained_p_direction": {m: s.retained_p_direction for m, s in result.students.items()},
        "resampled": result.resampled,
    }


# ----------------------------------------------------------------------------- plots


def plot_curves(
    curves: dict[str, list[tuple[int, float]]], refs: dict[str, float], path: str | Path, title: str
) -> None:
    """Validation loss against step of each student, with the single model's and the ensemble's losses drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for name, curve in curves.items():
        if curve:
            steps, losses = zip(*curve, strict=True)
            ax.plot(steps, losses, marker=".", label=name)
    for (name, value), color in zip(refs.items(), ("tab:gray", "tab:green"), strict=False):
        ax.axhline(value, color=color, ls="--", lw=1, label=name)
    ax.set(xlabel="student step", ylabel="validation loss (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_comparison(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Test loss of the single model, the ensemble and each student, with both references drawn."""
    names, losses = [r["model"] for r in rows], [r["test_loss"] for r in rows]
    palette = {"single": "tab:gray", "ensemble": "tab:green", "control": "tab:orange"}
    colors = [palette.get(r["kind"], "tab:blue") for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows)), 4), dpi=110)
    ax.bar(names, losses, color=colors)
    for r in rows:
        if r["kind"] in ("single", "ensemble"):
            ax.axhline(
                r["test_loss"], color="tab:gray" if r["kind"] == "single" else "tab:green", ls="--", lw=1
            )
    spread = max(losses) - min(losses)
    ax.set_ylim(min(losses) - max(spread, 0.01), max(losses) + 0.5 * max(spread, 0.01))
    ax.set(ylabel="test loss (nats/token)", title=title)
    ax.tick_params(axis="x", rotation=20)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
