"""What the recipe hands down its chain and which models it puts on the ladder. Pure: no torch, Ray or Prefect.

The flow asks this module which runs of the scaling study go down the chain (`hand_over`), which
models the chain made that could be the final one (`candidates`), and builds each candidate's rung
from its evaluated losses, its shape and the training FLOPs recorded in its runs' manifests (`rungs`).
"""

from __future__ import annotations

import math

from asymptote.config import ModelConfig
from asymptote.distill_config import DistillResult
from asymptote.flops import param_count
from asymptote.ladder import Rung, inference_cost, run_train_flops, sampling_flops, window_interval
from asymptote.recipe_config import HandOver, RecipeConfig
from asymptote.scaling_config import ScalingStudyResult
from asymptote.soups_config import SoupStudyResult
from asymptote.store import Store

Candidate = tuple[str, str, list[str]]
"""(name, kind, runs) of a model the chain made."""


def handed_size(config: RecipeConfig) -> str:
    """The label of the size whose runs go down the chain."""
    return config.scaling.labels[config.size]


def hand_over(config: RecipeConfig, scaled: ScalingStudyResult, member_val: list[float]) -> HandOver:
    """The chosen size's certified single models and members; the base is the member with the lowest
    validation loss (`member_val`, one per member)."""
    label = handed_size(config)
    single = {
        row.recipe: row.run
        for row in scaled.searches
        if row.size == label and row.budget == config.scaling.tokens
    }
    members = scaled.members[label]
    base = members[min(range(len(members)), key=lambda i: _finite(member_val[i]))]
    return HandOver(size=label, single=single, members=members, member_val=member_val, base=base)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


# ----------------------------------------------------------------------------- the ladder's candidates


def candidates(h: HandOver, distilled: DistillResult, souped: SoupStudyResult) -> list[Candidate]:
    """(name, kind, runs) of every model the chain made that could be the final one."""
    out = [
        ("single standard", "single", [h.single["standard"]]),
        ("single regularized", "single", [h.single["regularized"]]),
        (f"ensemble of {len(h.members)}", "ensemble", h.members),
    ]
    out += [(f"student: {m}", "student", [s.run.rel]) for m, s in distilled.students.items()]
    out += [(f"soup: {e.name}", "soup", [e.rel]) for e in souped.entries if e.kind in ("soup", "merge")]
    out += [("aligned average", "average", [e.rel]) for e in souped.entries if e.name == "aligned_avg"]
    return out


def run_flops(store: Store, rel: str) -> float:
    """Training FLOPs of a committed run, from its manifest (teachers' forwards included, one per
    student token: the compute of the method, an upper bound on what a student whose TeacherCache
    served repeated windows spent)."""
    meta = store.manifest(rel).meta
    objective = meta["config"].get("objective") or {}
    teachers = [shape_of(store, t) for t in objective.get("teachers", [])]
    return run_train_flops(shape_of(store, rel), int(meta["summary"]["tokens"]), teachers)


def shape_of(store: Store, rel: str) -> ModelConfig:
    return ModelConfig.model_validate(store.manifest(rel).meta["model"])


def needs(h: HandOver, souped: SoupStudyResult) -> dict[str, list[str]]:
    """Per kind, the training runs a model of that kind needs besides its own (an ensemble: its members)."""
    finetunes = [f.run.rel for f in souped.finetunes] + [r for rung in souped.probe for r in rung.runs]
    return {"student": h.members, "soup": [h.base, *finetunes], "average": h.members}


def train_compute(
    store: Store, kind: str, runs: list[str], h: HandOver, distilled: DistillResult, souped: SoupStudyResult
) -> float:
    if kind in ("soup", "average"):
        runs = []  # a soup or an average is not a run: its cost is what it is made of
    flops = sum(run_flops(store, r) for r in {*runs, *needs(h, souped).get(kind, [])})
    if kind == "student" and store.manifest(runs[0]).meta["config"].get("batches"):  # it read synthetic text
        flops += sampling_flops([shape_of(store, m) for m in h.members], distilled.synthetic_tokens)
    return flops


def rungs(
    store: Store,
    cands: list[Candidate],
    val: list[float],
    test: list[dict],
    h: HandOver,
    distilled: DistillResult,
    souped: SoupStudyResult,
) -> list[Rung]:
    """Every candidate's rung: its validation loss (the ensemble's at all its runs), its test figures,
    parameters and FLOPs."""
    out = []
    for (name, kind, runs), v, t in zip(cands, val, test, strict=True):
        shape = shape_of(store, runs[0])
        out.append(
            Rung(
                name=name,
                kind=kind,
                runs=runs,
                params=len(runs) * param_count(shape),
                inference_flops=inference_cost(shape, len(runs)),
                train_flops=train_compute(store, kind, runs, h, distilled, souped),
                val_loss=v,
                test_loss=t["test_loss"],
                test_bpb=t.get("test_bpb"),
                test_ci=window_interval(t["windows"]),
            )
        )
    return out
