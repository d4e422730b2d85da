"""Benchmark: distil an 8-member ensemble into one model 1/8 its size, three ways.

    python bench/distill.py --data ../shared/data/tinyshakespeare.txt [--store /tmp/bench-distill]

Trains (or reuses from the store's cache) the regularized single model and the ensemble members,
samples synthetic text, trains the students (sequence-level, token-level KL, self-distillation,
synthetic only) and prints progress on stderr, then LAST one JSON line on stdout with every loss
and each student's retained fraction (L_single - L_student) / (L_single - L_ensemble).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import typer

PAPER_MEMBERS = 8


def main(
    data: str = typer.Option(..., "--data", help="Text file (or folder of .txt) to train on."),
    store: str = typer.Option("/tmp/asymptote-bench-distill", "--store", help="Artifact store (cache)."),
    members: int = typer.Option(PAPER_MEMBERS, "--members", help="Ensemble size K (the paper: 8)."),
    recipe: str = typer.Option("distill-bench", "--recipe", "-r", help="Recipe name or YAML path."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Extra overrides: section.field=value."
    ),
) -> None:
    from asymptote.cli import console
    from asymptote.flows.distillation import DistillConfig, distill
    from asymptote.recipes import resolve

    overrides = [f"data.source={os.path.abspath(data)}", f"teacher.n_members={members}", *(set_ or [])]
    cfg = resolve(DistillConfig, recipe, [*overrides, f"store.uri={store}"])
    console.print(
        f"[bold]bench distill[/bold]: {cfg.model.preset} single + {members}-member ensemble, students "
        f"{', '.join(cfg.student.methods)}; store {store}"
    )
    started = time.time()
    res = distill(cfg)
    wall = time.time() - started
    console.print(
        f"single {res.single_loss:.4f}  ensemble x{members} {res.ensemble_loss:.4f}  ({wall:.0f} s)"
    )
    for m, s in res.students.items():
        console.print(f"student {m}: {s.val_loss:.4f}  retained {s.retained}")
    summary = {
        "data": data,
        "model": cfg.model.preset,
        "params": res.params,
        "members": members,
        "paper_members": PAPER_MEMBERS,
        "fewer_members_than_paper": members < PAPER_MEMBERS,
        "student_fraction_of_ensemble": 1 / members,
        "train_tokens": cfg.data.max_train_tokens,
        "single": res.single_loss,
        "ensemble": res.ensemble_loss,
        "member_losses": res.member_losses,
        "ensemble_curve": res.ensemble_curve,
        "students": {m: s.val_loss for m, s in res.students.items()},
        "retained": res.retained,
        "synthetic_sequences": cfg.sampling.n_sequences,
        "wall_s": round(wall, 1),
        "report": res.report_uri,
    }
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    typer.run(main)
