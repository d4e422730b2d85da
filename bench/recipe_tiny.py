"""Benchmark: the data-constrained recipe of "Pre-training under infinite compute" at CPU scale.

Runs the scaling-study flow with the study in bench/protocols/recipe_tiny.json (`--protocol`, fixed
before the run: the `scaling-tiny` recipe, 5 sizes over 8.8x in parameters, 3 seeds
per certified optimum, K=4 members, a 10k-token budget, 4 budgets for L(D), a coarse grid; see the
recipe) on the text at --data: certified searches (on validation) of the standard (WD 0.1) and
regularized (WD tuned) recipes per size, seed replicas, ensembles, every figure on the test split,
fits bootstrapped from the seed noise, ensemble curves from a member bootstrap (members and blocks
of test text redrawn), and a verdict per claim of the paper. When the code has changed since a study
ran, bench/recipe_tiny_reanalyse.py re-derives its verdicts from the store without training.
Progress goes to stderr; the last line on stdout is one JSON object with split, sizes, seeds, claims (estimate, ci,
p_direction, supported), the asymptotes, loss per K, multipliers and the checks (true only when supported).

    python bench/recipe_tiny.py --data ../shared/data/tinyshakespeare.txt [--store /tmp/bench-scaling]
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Optional

import typer
from common import PROTOCOLS, emit, load_protocol, protocol_fields, study_config


def _budget(cfg, res) -> dict:
    """What this run spent and how it differs from the paper's protocol, so the numbers read right."""
    return {
        "sizes": {s.label: s.params for s in res.study.sizes},
        "tokens": cfg.tokens,
        "efficiency_budgets": cfg.efficiency.budgets,
        "members": cfg.ensemble.members,
        "grid": cfg.search.grid.model_dump(),
        "runs": len(res.runs),
        "searches_certified": sum(r.certified for r in res.searches),
        "searches": len(res.searches),
        "note": "coarser grid than the paper's (lr x3, wd x4 steps, epochs 4..64) and CPU-scale models; "
        "selection on validation, every figure on test",
    }


def _seeds(res) -> dict:
    """Seeds behind each certified point (size/recipe/budget) and each ensemble."""
    out = {}
    for s in res.study.sizes:
        out[f"{s.label}/standard"] = len(s.standard)
        out[f"{s.label}/regularized"] = len(s.regularized)
        out[f"{s.label}/members"] = len(s.members)
    for b, v in res.study.efficiency.items():
        out[f"standard D={b}"] = len(v)
    return out


def main(
    data: str = typer.Option(..., "--data", help="Text file to study."),
    store: Optional[str] = typer.Option(None, "--store", help="Artifact store (default: a temp folder)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a recipe field (repeatable)."),
    save: bool = typer.Option(False, "--save", help="Also write the result to bench/results/."),
    protocol: str = typer.Option(
        str(PROTOCOLS / "recipe_tiny.json"), "--protocol", help="The study, fixed before the run."
    ),
) -> None:
    from asymptote.flows.scaling import ScalingStudyConfig, scaling_study

    store = store or tempfile.mkdtemp(prefix="bench-scaling-")
    proto = load_protocol(protocol)
    cfg = study_config(ScalingStudyConfig, proto["study"], data, store, set_)
    print(f"[bench] scaling-tiny on {data}; sizes {cfg.labels}; store {store}", file=sys.stderr, flush=True)
    started = time.time()
    res = scaling_study(cfg)
    f = res.figures
    out = {
        "split": f["split"],
        "sizes": f["sizes"],
        "seeds": _seeds(res),
        "claims": f["claims"],
        "regularized_asymptote": {"value": f["regularized_asymptote"], "ci": f["regularized_asymptote_ci"]},
        "standard_asymptote": {"value": f["standard_asymptote"], "ci": f["standard_asymptote_ci"]},
        "joint_asymptote": {"value": f["joint_asymptote"], "ci": f["joint_asymptote_ci"]},
        "seed_noise": f["seed_noise"],
        "loss_per_k": f["loss_per_k"],
        "loss_per_k_probs": f["loss_per_k_probs"],
        "loss_per_k_mean_over_subsets": f["loss_per_k_mean_over_subsets"],
        "data_efficiency": f["data_efficiency"],
        **{k: f[k] for k in ("wd_overfit_fixed", "ensemble_monotone_in_k", "joint_below_regularized")},
        "report": res.report_uri,
        "wall_s": round(time.time() - started, 1),
        "budget": _budget(cfg, res),
        "changed": list(set_),
    } | protocol_fields(proto)
    emit(out, save, data)


if __name__ == "__main__":
    typer.run(main)
