"""What the distillation study trains, and how its figures are put together. Pure: no torch, Ray or Prefect.

The flow asks this module which runs to make (the single model's search, the members, each student's
search and its jobs), checks its inputs here, and assembles the result from what its steps returned.
Jobs are built exactly as the scaling study builds them, so equal settings give equal job keys and
one runs/<key> artifact whichever study trained it first.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from asymptote.config import DataConfig, ModelConfig, TrainConfig
from asymptote.distill_config import (
    METHODS,
    DistillConfig,
    DistillResult,
    StudentOutcome,
    StudentPoint,
    Teachers,
)
from asymptote.distill_search import StudentDescent, retention, student_start
from asymptote.flops import param_count
from asymptote.job_spec import TrainJob, make_job
from asymptote.refs import DataRef
from asymptote.scaling import CoordinateDescent, member_train, point_job
from asymptote.scaling_plan import Descent
from asymptote.search_space import RECIPES, Point
from asymptote.store import Store

# ----------------------------------------------------------------------------- inputs


def check_data(config: DistillConfig, data: DataRef) -> None:
    """The corpus holds the budget and a test split (every figure is read there)."""
    if config.tokens > data.n_train:
        raise ValueError(
            f"budget {config.tokens:,} exceeds the corpus's {data.n_train:,} training tokens; lower "
            "budget or use a larger data.source"
        )
    if not data.n_test:
        raise ValueError(
            "the corpus has no test split (data.test_fraction=0): distillation reports its figures on "
            "a split no choice has seen; set data.test_fraction > 0"
        )


def check_single_shape(store: Store, single: str, model: ModelConfig) -> None:
    """retained compares a student with the single model of its own size: refuse a mismatch."""
    theirs = ModelConfig.model_validate(store.manifest(single).meta["model"]).model_dump(exclude={"preset"})
    if theirs != model.model_dump(exclude={"preset"}):
        raise ValueError(
            f"teacher.single {single} has shape {theirs}, the student {model.model_dump()}; "
            "set model to the single model's shape (the student must match it)"
        )


# ----------------------------------------------------------------------------- teachers


def data_at(config: DistillConfig) -> DataConfig:
    """The corpus cut to the budget, as the scaling study's Study.data_at builds it (equal job keys)."""
    return DataConfig.model_validate(config.data.model_dump() | {"max_train_tokens": config.tokens})


def volatile_fields(config: DistillConfig, store: Store, hub: str | None, name: str) -> dict[str, Any]:
    """A job's fields that never enter its key: its label, compute, store and progress hub."""
    return {"name": name, "compute": config.compute, "store": store.cfg, "progress_hub": hub}


def single_descent(config: DistillConfig, store: Store, data: DataRef, hub: str | None) -> Descent:
    """The scaling study's regularized search at the student's size and budget (its job keys)."""
    s = config.search.start
    cd = CoordinateDescent(
        config.search.grid,
        RECIPES["regularized"],
        Point(s.lr, s.weight_decay, s.epochs),
        max_runs=config.search.max_runs,
    )

    def job(p: Point) -> TrainJob:
        v = volatile_fields(config, store, hub, f"{config.name} single {p.label()}")
        return point_job(config.model, data_at(config), data.rel, config.train, p, **v)

    return Descent(name=f"{config.name} regularized", cd=cd, job=job)


def member_jobs(
    config: DistillConfig, store: Store, data: DataRef, best: Point, hub: str | None
) -> list[TrainJob]:
    """Members 1..K: the single optimum with the paper's member recipe, seed = member index."""
    e = config.ensemble
    return [
        make_job(
            model=config.model,
            data=data_at(config),
            data_artifact=data.rel,
            train=member_train(config.train, best, k, e.epoch_factor, e.weight_decay_factor),
            **volatile_fields(config, store, hub, f"{config.name} member {k}"),
        )
        for k in range(1, e.members + 1)
    ]


# ----------------------------------------------------------------------------- students


def _steps(tokens: int, block: int, batch_size: int, epochs: float) -> int:
    """Optimiser steps of `epochs` passes over `tokens`: asymptote.data.steps_for without max_steps, kept
    here because that module imports torch (a test holds the two equal)."""
    per_epoch = ((tokens - 1) // block) // batch_size
    if per_epoch < 1:
        raise ValueError(f"{tokens} tokens do not fill one batch of {batch_size} x {block}")
    return max(1, round(epochs * per_epoch))


def student_train(config: DistillConfig, point: StudentPoint, lr: float) -> TrainConfig:
    """The template at the point's multiple of the single model's learning rate `lr`, with the
    point's epochs and weight decay; the run evaluates curve_points times (its learning curve)."""
    total = _steps(config.tokens, config.model.block_size, config.train.batch_size, point.epochs)
    fields = {
        "lr": lr * point.lr_scale,
        "weight_decay": point.weight_decay,
        "epochs": point.epochs,
        "max_steps": None,
        "eval_every": max(1, total // config.student.curve_points),
    }
    return TrainConfig.model_validate(config.train.model_dump() | fields)


def student_job(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    method: str,
    point: StudentPoint,
    lr: float,
    teachers: Teachers,
    synthetic: DataRef | None,
    hub: str | None,
) -> TrainJob:
    """The student run of `method` at `point`: its objective (KL to the teachers) and batches (synthetic mix)."""
    m, extra = METHODS[method], {}
    if m.objective == "token_kl":
        extra["objective"] = {
            "kind": "token_kl",
            "teachers": teachers.members,
            "temperature": config.student.kl_temperature,
            "alpha": point.alpha,
            "combine": config.sampling.combine,
        }
    if m.synthetic:
        extra["batches"] = {
            "kind": "mixture",
            "synthetic": synthetic.rel,
            "weight": point.mix,
            "synthetic_tokens": config.synthetic_tokens(point.synthetic),
        }
    return make_job(
        model=config.model,
        data=data_at(config),
        train=student_train(config, point, lr),
        data_artifact=data.rel,
        **volatile_fields(config, store, hub, f"{config.name} student {method} {point.label()}"),
        **extra,
    )


def student_descents(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    synthetic: DataRef | None,
    hub: str | None,
) -> dict[str, Descent]:
    """One certified search per method, each from the start derived from the single model's training
    config, at multiples of its learning rate."""
    single = store.manifest(teachers.single).meta["config"]["train"]
    start = student_start(
        config.student.grid,
        config.student.start,
        single["epochs"] * config.ensemble.epoch_factor,
        single["weight_decay"],
    )
    out = {}
    for method in config.student.methods:
        cd = StudentDescent(
            config.student.grid,
            config.student.axes(method),
            start,
            max_runs=config.student.max_runs,
            walk=config.student.walk,
        )

        def job(p: StudentPoint, method: str = method) -> TrainJob:
            return student_job(config, store, data, method, p, single["lr"], teachers, synthetic, hub)

        out[method] = Descent(name=f"{config.name} student {method}", cd=cd, job=job)
    return out


# ----------------------------------------------------------------------------- figures


def run_curve(store: Store, rel: str) -> list[tuple[int, float]]:
    """(step, validation loss) of every evaluation a committed run made: its learning curve."""
    lines = store.read(rel, "metrics.jsonl").decode().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [(int(r["step"]), float(r["val_loss"])) for r in records if r.get("val_loss") is not None]


def run_params(store: Store, rel: str) -> int:
    """Parameter count of a committed run's model, from its manifest (no weights read)."""
    return param_count(ModelConfig.model_validate(store.manifest(rel).meta["model"]))


def val_figures(ens: dict, teachers: Teachers, store: Store, how: str) -> dict[str, Any]:
    """Validation losses of the single model, the ensemble (combined by `how`) and each member."""
    if teachers.single in teachers.members:
        single = ens["member"][teachers.members.index(teachers.single)]
    else:
        single = store.read_json(teachers.single, "summary.json").get("val_loss")
    return {
        "single_loss": single,
        "ensemble_loss": ens[how][-1],
        "member_losses": ens["member"],
        "ensemble_curve": ens[how],
    }


def student_outcome(
    config: DistillConfig,
    store: Store,
    method: str,
    search: Descent,
    test: dict,
    retained: float | None,
    ci: tuple[float, float] | None,
) -> StudentOutcome:
    """The chosen student of one method: its run, settings, search cost and test figures."""
    run, best = search.runs[search.best], search.best
    return StudentOutcome(
        method=method,
        run=run,
        point=best._asdict(),
        certified=search.cd.certified,
        points=len(search.cd.results),
        steps=int(run.summary.get("steps", 0)),
        search_steps=sum(int(r.summary.get("steps", 0)) for r in search.runs.values()),
        synthetic_tokens=config.synthetic_tokens(best.synthetic) if METHODS[method].synthetic else 0,
        val_loss=search.cd.results[best],
        test_loss=test["test_loss"],
        test_bpb=test["test_bpb"],
        retained=retained,
        retained_ci=list(ci) if ci else None,
        curve=run_curve(store, run.rel),
    )


def assemble(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    val: dict,
    synthetic: DataRef | None,
    students: dict[str, Descent],
    tests: dict[str, dict],
    flow_run_id: str | None,
) -> DistillResult:
    """The result: test figures of the single model, the ensemble and each chosen student, with the
    retained fraction of the ensemble's gain and its paired bootstrap interval over test windows."""
    windows = {name: np.asarray(t["windows"]) for name, t in tests.items()}
    ev = config.evaluation
    kept = retention(
        windows["single"],
        windows["ensemble"],
        {m: windows[m] for m in students},
        ev.n_boot,
        ev.level,
        ev.seed,
    )
    outcomes = {
        m: student_outcome(config, store, m, s, tests[m], kept.retained[m], kept.retained_ci[m])
        for m, s in students.items()
    }
    return DistillResult(
        flow_run_id=flow_run_id,
        data=data,
        teachers=teachers,
        single_loss=tests["single"]["test_loss"],
        ensemble_loss=tests["ensemble"]["test_loss"],
        single_bpb=tests["single"]["test_bpb"],
        ensemble_bpb=tests["ensemble"]["test_bpb"],
        gain=kept.gain,
        gain_ci=list(kept.gain_ci),
        gain_resolved=kept.resolved,
        test_windows=len(windows["single"]),
        val=val,
        params=run_params(store, teachers.single),
        synthetic=synthetic,
        synthetic_tokens=(synthetic.n_train + synthetic.n_val) if synthetic else 0,
        students=outcomes,
        report_uri="",
    )
