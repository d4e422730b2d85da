"""Benchmark: distil an 8-member ensemble into one model 1/8 its size, three ways, judged on test.

    python bench/distill.py --data ../shared/data/tinyshakespeare.txt [--store DIR] [--protocol FILE]
                            [--seed-offset N] [--save]

Everything that shapes the figures comes from the protocol file (bench/protocols/distill.json by
default), fixed before the run: the teachers' and students' grids and their hard limits, the run cap,
the seeds, the control and the bootstrap. The regularized single model is searched over the students'
span; the 8 members are made as the scaling study makes them; each student's settings are searched on
validation; a choice on a grid edge grows that grid up to the protocol's limits. Then the single
model, each chosen student and a no-teacher control (the combined student's settings and compute,
real text only) train at several seeds, and every figure on the test split comes from a hierarchical
bootstrap (seeds, then test windows). The paper's method, sequence-level distillation, is the
headline; token_kl and combined are this project's extensions.

Progress on stderr; LAST one JSON line on stdout: split, seeds, single, control, ensemble and each
student as {estimate, ci, p_direction}, retained per method likewise, paper_method, extensions,
single_at_edge, protocol (its hash), commit, wall_s.
"""

from __future__ import annotations

import os
import sys
import time

from common import emit, load_protocol, parser, protocol_fields, store_uri


def _round(x, n: int = 4):
    if isinstance(x, float):
        return round(x, n)
    if isinstance(x, (list, tuple)):
        return [_round(v, n) for v in x]
    if isinstance(x, dict):
        return {k: _round(v, n) for k, v in x.items()}
    return x


def config_from(protocol: dict, data: str, store: str, seed_offset: int):
    """The study's config: the protocol's, on this corpus and store, its seeds moved by the offset."""
    from asymptote.config import build
    from asymptote.distill_config import DistillConfig

    fields = dict(protocol["config"])
    fields["data"] = dict(fields.get("data", {})) | {"source": data if ":" in data else os.path.abspath(data)}
    fields["store"] = {"uri": store}
    fields["seed_offset"] = seed_offset
    return build(DistillConfig, fields)


def summary(cfg, res, wall: float, protocol) -> dict:
    """The bench's JSON line from the study's result."""
    from asymptote.reports.distill import single_edges, student_edges

    fig = lambda f: None if f is None else f.model_dump()  # noqa: E731
    return {
        "split": res.split,
        "model": cfg.model.preset,
        "params": res.params,
        "budget_tokens": cfg.tokens,
        "members": len(res.teachers.members),
        "seeds": res.seeds,
        "resampled": res.resampled,
        "single": fig(res.figures["single"]),
        "control": fig(res.figures.get("control")),
        "ensemble": fig(res.figures["ensemble"]),
        "students": {m: fig(res.figures[m]) for m in res.students},
        "retained": {m: fig(res.retained_figures.get(m)) for m in res.students},
        "control_retained": fig(res.retained_figures.get("control")),
        "teacher_effect": fig(res.teacher_effect),
        "references": res.references,
        "paper_method": res.paper_method,
        "extensions": [m for m in res.students if m != res.paper_method],
        "ensemble_gain": res.gain,
        "ensemble_gain_ci": res.gain_ci,
        "gain_resolved": res.gain_resolved,
        "test_windows": res.test_windows,
        "single_point": res.teachers.single_point,
        "single_grid": res.teachers.grid,
        "single_certified": res.teachers.certified,
        "single_search_points": res.teachers.search_points,
        "single_at_edge": single_edges(cfg, res.teachers),
        "chosen": {m: s.point for m, s in res.students.items()},
        "student_grids": {m: s.grid for m, s in res.students.items()},
        "at_edge": {m: student_edges(cfg, s) for m, s in res.students.items()},
        "certified": {m: s.certified for m, s in res.students.items()},
        "search_points": {m: s.points for m, s in res.students.items()},
        "student_steps": {m: s.steps for m, s in res.students.items()},
        "control_steps": res.control.steps if res.control else None,
        "search_steps": {m: s.search_steps for m, s in res.students.items()},
        "seed_losses": res.seed_losses,
        "val": {"single": res.val["single_loss"], "ensemble": res.val["ensemble_loss"]},
        "synthetic_tokens": res.synthetic_tokens,
        **protocol_fields(protocol, cfg.seed_offset),
        "wall_s": round(wall, 1),
        "report": res.report_uri,
    }


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0], protocol="distill").parse_args(argv)
    protocol = load_protocol(args.protocol)
    store = store_uri(args.store)
    cfg = config_from(protocol, args.data, store, args.seed_offset)

    from asymptote.flows.distillation import distill

    print(
        f"bench distill: {cfg.model.preset} single + {cfg.ensemble.members}-member ensemble, students "
        f"{', '.join(cfg.student.methods)}, {cfg.seeds} seeds, control {cfg.control}; budget {cfg.tokens:,} "
        f"tokens; store {store}",
        file=sys.stderr,
        flush=True,
    )
    started = time.time()
    res = distill(cfg)
    wall = time.time() - started
    emit(_round(summary(cfg, res, wall, protocol)), args.save, args.data)


if __name__ == "__main__":
    main()
