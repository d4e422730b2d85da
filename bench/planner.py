"""Benchmark: does the planner predict a size it has not seen?

Runs the scaling study (recipe `scaling-tiny`) on every size but the largest, fits the planner to it,
asks for the certified test loss of the largest size (a mean over the study's seeds, with the
planner's interval), then runs the whole study, whose smaller sizes are cache hits, so only the
largest size trains: certified searches on validation started from the previous size's optimum, seed
replicas on test, exactly as the study does. The comparison is on test, which no choice has read.

The study is read from bench/protocols/planner.json (`--protocol`), fixed before the run: scaling-tiny
reduced to fit a shared CPU machine (say so when quoting it): K=2 members, no extra token budgets for
L(D) and no epoch sweep; `--set` changes a field (and is listed in the result's `changed`). Progress goes
to stderr; the last line on stdout is one JSON object: predicted, predicted_ci, actual, abs_error,
covered, wall_s, and what was predicted (option, settings, fits, extrapolation), with every option it
could not evaluate and why (`not_evaluated`: a law that is not identified is never a prediction) and
the other single-model option's prediction beside its actual loss.

    python bench/planner.py --data ../shared/data/tinyshakespeare.txt [--store /tmp/bench-planner]
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Optional

import numpy as np
import typer
from common import PROTOCOLS, emit, load_protocol, protocol_fields, study_config


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _planner(cfg, res):
    from asymptote.planner import PlanInputs, Planner, design_of

    params = {s.label: s.params for s in res.study.sizes}
    design = design_of(cfg, res.searches, params)
    return Planner(PlanInputs(study=res.study, design=design, fits=cfg.fits))


def _predict(planner, n: int, seeds: int) -> dict:
    from asymptote.planner import OutOfRange

    try:
        p = planner.predict(n, seeds=seeds, extrapolate=True, single_only=True)
    except OutOfRange as err:
        return {"refused": str(err)}
    others = {}  # the single-model option not chosen: its prediction, or why it has none
    for name in ("standard", "regularized"):
        if name == p.option:
            continue
        if name in planner.usable:
            other = planner.predict(n, seeds=seeds, extrapolate=True, option=name)
            others[name] = {"predicted": other.loss, "predicted_ci": other.loss_ci, "identified": True}
        else:  # no number from a law that is not identified: it would read as a prediction
            why = planner.unusable.get(name, "no law")
            others[name] = {"predicted": None, "identified": False, "not_evaluated": why}
    return {"prediction": p, "others": others}


def main(
    data: str = typer.Option(..., "--data", help="Text file to study."),
    store: Optional[str] = typer.Option(None, "--store", help="Artifact store (default: a temp folder)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a recipe field (repeatable)."),
    save: bool = typer.Option(False, "--save", help="Also write the result to bench/results/."),
    protocol: str = typer.Option(
        str(PROTOCOLS / "planner.json"), "--protocol", help="The study, fixed before the run."
    ),
) -> None:
    from asymptote.flows.scaling import ScalingStudyConfig, scaling_study

    store = store or tempfile.mkdtemp(prefix="bench-planner-")
    proto = load_protocol(protocol)
    full = study_config(ScalingStudyConfig, proto["study"], data, store, set_)
    held_out = full.labels[-1]
    small = full.model_copy(update={"sizes": full.sizes[:-1]})
    small = ScalingStudyConfig.model_validate(small.model_dump())
    started = time.time()
    _log(f"study without {held_out}: sizes {small.labels}; store {store}")
    res_small = scaling_study(small)
    planner = _planner(small, res_small)
    _log(f"fitted options: {list(planner.options)}; study took {time.time() - started:.0f} s")
    res_full = scaling_study(full)  # the smaller sizes are cache hits; the held-out size trains
    target = res_full.study.sizes[-1]
    asked = _predict(planner, target.params, full.seeds)
    out = {"held_out": held_out, "params": target.params, "seeds": full.seeds}
    if "refused" in asked:
        out |= {"predicted": None, "refused": asked["refused"]}
    else:
        p = asked["prediction"]
        actual = float(np.mean(getattr(target, p.option)))
        out |= {
            "predicted": p.loss,
            "predicted_ci": p.loss_ci,
            "actual": actual,
            "abs_error": abs(p.loss - actual),
            "covered": p.loss_ci[0] <= actual <= p.loss_ci[1],
            "option": p.option,
            "law_ci": p.law_ci,
            "settings": {"lr": p.lr, "weight_decay": p.weight_decay, "epochs": p.epochs},
            "fits": p.fits,
            "extrapolations": p.extrapolations,
            "notes": p.notes,
            "not_evaluated": p.unevaluated,
            "other_options": {
                k: v | {"actual": float(np.mean(getattr(target, k)))} for k, v in asked["others"].items()
            },
        }
    out |= {
        "actual_per_seed": {r: getattr(target, r) for r in ("standard", "regularized")},
        "split": res_full.study.split,
        "wall_s": round(time.time() - started, 1),
        "changed": list(set_),
    } | protocol_fields(proto)
    emit(out, save, data)


if __name__ == "__main__":
    typer.run(main)
