"""Benchmark: distil an 8-member ensemble into one model 1/8 its size, three ways, judged on test.

    python bench/distill.py --data ../shared/data/tinyshakespeare.txt [--store /tmp/bench-distill]

Builds (or reuses from the store) the regularized single model (certified search on validation) and
the 8 members as the scaling study makes them, samples synthetic text from the ensemble, searches each
student's settings on validation, and reports on the test split: losses, retained fractions
(L_single - L_student) / (L_single - L_ensemble) with bootstrap intervals over test windows, and what
each student cost. Progress on stderr; LAST one JSON line on stdout.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import typer
from common import emit

PAPER_MEMBERS = 8


def _round(x, n: int = 4):
    if isinstance(x, float):
        return round(x, n)
    if isinstance(x, (list, tuple)):
        return [_round(v, n) for v in x]
    if isinstance(x, dict):
        return {k: _round(v, n) for k, v in x.items()}
    return x


def main(
    data: str = typer.Option(..., "--data", help="Text file (or folder of .txt) to train on."),
    store: str = typer.Option("/tmp/asymptote-bench-distill", "--store", help="Artifact store (cache)."),
    members: int = typer.Option(PAPER_MEMBERS, "--members", help="Ensemble size K (the paper: 8)."),
    recipe: str = typer.Option("distill-bench", "--recipe", "-r", help="Recipe name or YAML path."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Extra overrides: section.field=value."
    ),
    save: bool = typer.Option(False, "--save", help="Also write the result to bench/results/."),
) -> None:
    from asymptote.cli import console
    from asymptote.distill_config import DistillConfig
    from asymptote.flows.distillation import distill
    from asymptote.recipes import resolve
    from asymptote.reports.distill import single_edges, student_edges

    overrides = [f"data.source={os.path.abspath(data)}", f"ensemble.members={members}", *(set_ or [])]
    cfg = resolve(DistillConfig, recipe, [*overrides, f"store.uri={store}"])
    console.print(
        f"[bold]bench distill[/bold]: {cfg.model.preset} single + {members}-member ensemble, students "
        f"{', '.join(cfg.student.methods)}; budget {cfg.tokens:,} tokens; store {store}"
    )
    started = time.time()
    res = distill(cfg)
    wall = time.time() - started
    console.print(
        f"test: single {res.single_loss:.4f}  ensemble x{members} {res.ensemble_loss:.4f}  ({wall:.0f} s)"
    )
    for s in res.ranked():
        console.print(f"student {s.method}: {s.test_loss:.4f}  retained {s.retained}  {s.retained_ci}")
    summary = {
        "data": data,
        "split": res.split,
        "model": cfg.model.preset,
        "params": res.params,
        "budget_tokens": cfg.tokens,
        "members": len(res.teachers.members),
        "paper_members": PAPER_MEMBERS,
        "student_fraction_of_ensemble": 1 / len(res.teachers.members),
        "single": res.single_loss,
        "ensemble": res.ensemble_loss,
        "single_bpb": res.single_bpb,
        "ensemble_bpb": res.ensemble_bpb,
        "ensemble_gain": res.gain,
        "ensemble_gain_ci": res.gain_ci,
        "gain_resolved": res.gain_resolved,
        "test_windows": res.test_windows,
        "single_point": res.teachers.single_point,
        "single_certified": res.teachers.certified,
        "single_at_edge": single_edges(cfg, res.teachers),
        "val": {"single": res.val["single_loss"], "ensemble": res.val["ensemble_loss"]},
        "member_val_losses": res.val["member_losses"],
        "students": {m: s.test_loss for m, s in res.students.items()},
        "retained": res.retained,
        "retained_ci": {m: s.retained_ci for m, s in res.students.items()},
        "best_student": res.ranked()[0].method,
        "chosen": {m: s.point for m, s in res.students.items()},
        "certified": {m: s.certified for m, s in res.students.items()},
        "at_edge": {m: student_edges(cfg, s) for m, s in res.students.items()},
        "student_walk": cfg.student.walk,
        "search_points": {m: s.points for m, s in res.students.items()},
        "student_steps": {m: s.steps for m, s in res.students.items()},
        "search_steps": {m: s.search_steps for m, s in res.students.items()},
        "synthetic_tokens": res.synthetic_tokens,
        "synthetic_tokens_used": {m: s.synthetic_tokens for m, s in res.students.items()},
        "wall_s": round(wall, 1),
        "report": res.report_uri,
    }
    emit(_round(summary), save, data)


if __name__ == "__main__":
    typer.run(main)
