"""What the distillation study trains, and how its figures are put together. Pure: no torch, Ray or Prefect.

The flow asks this module which runs to make (the single model's search over the students' span, the
members, each student's search and its jobs, how a settled search's grid grows past a chosen edge, the
seed replicas and the no-teacher control), checks its inputs here, and assembles the result from what
its steps returned.
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
    ControlOutcome,
    DistillConfig,
    DistillResult,
    SamplingConfig,
    StudentOutcome,
    StudentPoint,
    Teachers,
)
from asymptote.distill_search import (
    StudentDescent,
    grow,
    member_pseudo_seeds,
    retention,
    settled_edges,
    student_start,
)
from asymptote.flops import param_count
from asymptote.job_spec import TrainJob, make_job
from asymptote.refs import DataRef
from asymptote.scaling import CoordinateDescent, member_train, point_job
from asymptote.scaling_plan import Descent
from asymptote.search_space import RECIPES, Point, SearchGrid
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


def template(config: DistillConfig) -> TrainConfig:
    """The train template with seed_offset added to its seeds (a replication trains fresh seeds)."""
    if not config.seed_offset:
        return config.train
    t = config.train
    seeds = {"train_seed": t.train_seed + config.seed_offset, "data_seed": t.data_seed + config.seed_offset}
    return t.model_copy(update=seeds)


def sampling_spec(config: DistillConfig) -> SamplingConfig:
    """What to sample: enough sequences for the largest synthetic amount students may reach, its seed
    moved by seed_offset."""
    s = config.sampling
    return s.model_copy(
        update={"n_sequences": config.sequences_needed(), "seed": s.seed + config.seed_offset}
    )


def _joined(values: list[float], more: list[float]) -> list[float]:
    return sorted({float(f"{v:.12g}") for v in [*values, *more]})


def single_grid(config: DistillConfig) -> SearchGrid:
    """The single model's grid: the search's own, joined (baseline.match_students) with the students'
    epochs and weight decays and with search.start.lr times each student learning-rate multiple, so
    the baseline spans what the students may reach."""
    g = config.search.grid
    if not config.baseline.match_students:
        return g
    sg, lr = config.student.grid, config.search.start.lr
    return SearchGrid(
        lr=_joined(g.lr, [lr * m for m in sg.lr_scale]),
        weight_decay=_joined(g.weight_decay, sg.weight_decay),
        epochs=_joined(g.epochs, sg.epochs),
    )


def single_limits(config: DistillConfig):
    """Hard limits of the single model's axes: edges' epochs and weight decay, its learning rate as
    search.start.lr times edges.lr_scale."""
    e, lr = config.edges, config.search.start.lr

    def limits(axis: str, values: list[float]) -> tuple[float, float]:
        if axis == "lr":
            return lr * e.lr_scale[0], lr * e.lr_scale[1]
        return e.limits(axis, values)

    return limits


def student_limits(config: DistillConfig):
    return config.edges.limits


def single_descent(config: DistillConfig, store: Store, data: DataRef, hub: str | None) -> Descent:
    """The scaling study's regularized search at the student's size and budget (its job keys), over
    single_grid and, with baseline.match_students, the students' run cap and walk."""
    s = config.search.start
    matched = config.baseline.match_students
    cd = CoordinateDescent(
        single_grid(config),
        RECIPES["regularized"],
        Point(s.lr, s.weight_decay, s.epochs),
        max_runs=config.student.max_runs if matched else config.search.max_runs,
        walk=config.student.walk if matched else "neighbourhood",
    )
    train = template(config)

    def job(p: Point) -> TrainJob:
        v = volatile_fields(config, store, hub, f"{config.name} single {p.label()}")
        return point_job(config.model, data_at(config), data.rel, train, p, **v)

    return Descent(name=f"{config.name} regularized", cd=cd, job=job)


def grown(config: DistillConfig, descents: list[Descent], single: bool = False) -> list[Descent]:
    """The settled searches whose grid grew past a chosen edge (edges.extend): they go on searching."""
    if not config.edges.extend:
        return []
    limits = single_limits(config) if single else student_limits(config)
    return [d for d in descents if grow(d.cd, limits)]


def member_jobs(
    config: DistillConfig, store: Store, data: DataRef, best: Point, hub: str | None
) -> list[TrainJob]:
    """Members 1..K: the single optimum with the paper's member recipe, seed = seed_offset + member index."""
    e, o = config.ensemble, config.seed_offset
    trains = [
        member_train(config.train, best, k, e.epoch_factor, e.weight_decay_factor)
        for k in range(1, e.members + 1)
    ]
    if o:
        trains = [
            t.model_copy(update={"train_seed": t.train_seed + o, "data_seed": t.data_seed + o})
            for t in trains
        ]
    return [
        make_job(
            model=config.model,
            data=data_at(config),
            data_artifact=data.rel,
            train=train,
            **volatile_fields(config, store, hub, f"{config.name} member {k}"),
        )
        for k, train in enumerate(trains, start=1)
    ]


# ----------------------------------------------------------------------------- students


def _steps(tokens: int, block: int, batch_size: int, epochs: float) -> int:
    """Optimiser steps of `epochs` passes over `tokens`: asymptote.data.steps_for without max_steps, kept
    here because that module imports torch (a test holds the two equal)."""
    per_epoch = ((tokens - 1) // block) // batch_size
    if per_epoch < 1:
        raise ValueError(f"{tokens} tokens do not fill one batch of {batch_size} x {block}")
    return max(1, round(epochs * per_epoch))


def student_train(
    config: DistillConfig, point: StudentPoint, lr: float, seed: int | None = None
) -> TrainConfig:
    """The template at the point's multiple of the single model's learning rate `lr`, with the
    point's epochs and weight decay; the run evaluates curve_points times (its learning curve).
    seed: a replica at train_seed = data_seed = seed (None: the template's, as the search ran it)."""
    total = _steps(config.tokens, config.model.block_size, config.train.batch_size, point.epochs)
    fields = {
        "lr": lr * point.lr_scale,
        "weight_decay": point.weight_decay,
        "epochs": point.epochs,
        "max_steps": None,
        "eval_every": max(1, total // config.student.curve_points),
    }
    if seed is not None:
        fields |= {"train_seed": seed, "data_seed": seed}
    return TrainConfig.model_validate(template(config).model_dump() | fields)


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
    seed: int | None = None,
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
    label = f"{config.name} student {method} {point.label()}" + (f" seed {seed}" if seed is not None else "")
    return make_job(
        model=config.model,
        data=data_at(config),
        train=student_train(config, point, lr, seed),
        data_artifact=data.rel,
        **volatile_fields(config, store, hub, label),
        **extra,
    )


def control_job(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    point: StudentPoint,
    lr: float,
    seed: int,
    hub: str | None,
) -> TrainJob:
    """The no-teacher control: cross-entropy on real text only at a student's epochs (so its steps),
    weight decay and learning rate."""
    return make_job(
        model=config.model,
        data=data_at(config),
        train=student_train(config, point, lr, seed),
        data_artifact=data.rel,
        **volatile_fields(config, store, hub, f"{config.name} control {point.label()} seed {seed}"),
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
    single = single_train(store, teachers)
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


def single_train(store: Store, teachers: Teachers) -> dict[str, Any]:
    """The single model's training config (its learning rate is the students' reference)."""
    return store.manifest(teachers.single).meta["config"]["train"]


# ----------------------------------------------------------------------------- seeds and the control


def replica_jobs(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    students: dict[str, Descent],
    synthetic: DataRef | None,
    hub: str | None,
) -> dict[str, list[TrainJob]]:
    """The runs beyond the searches' own: per arm, seeds 1..seeds-1 of the single model (when searched
    here) and of each chosen student, and every seed of the no-teacher control."""
    seeds = [config.replica_seed(r) for r in range(1, config.seeds)]
    lr = single_train(store, teachers)["lr"]
    out: dict[str, list[TrainJob]] = {}
    if teachers.single_point is not None:
        best, data_cfg, train = Point(**teachers.single_point), data_at(config), template(config)
        out["single"] = [
            point_job(
                config.model,
                data_cfg,
                data.rel,
                train,
                best,
                seed=s,
                **volatile_fields(config, store, hub, f"{config.name} single {best.label()} seed {s}"),
            )
            for s in seeds
        ]
    for method, d in students.items():
        out[method] = [
            student_job(config, store, data, method, d.best, lr, teachers, synthetic, hub, seed=s)
            for s in seeds
        ]
    if (method := config.control_method) in students:
        point = students[method].best
        out["control"] = [
            control_job(config, store, data, point, lr, config.replica_seed(r), hub)
            for r in range(config.seeds)
        ]
    return out


def arm_runs(
    teachers: Teachers, students: dict[str, Descent], replicas: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Per arm, its runs one per seed: the search's chosen run first, then its replicas; the ensemble
    is one arm of its K members (they are its seeds already)."""
    out = {"single": [teachers.single, *replicas.get("single", [])], "ensemble": teachers.members}
    out |= {m: [d.runs[d.best].rel, *replicas.get(m, [])] for m, d in students.items()}
    if "control" in replicas:
        out["control"] = replicas["control"]
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
    tests: list[dict],
    runs: list[str],
    kept,
) -> StudentOutcome:
    """The chosen student of one method: its runs (one per seed), settings, search cost and test figures."""
    run, best = search.runs[search.best], search.best
    fig = kept.retained_figures.get(method)
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
        test_loss=kept.losses[method].estimate,
        test_bpb=float(np.mean([t["test_bpb"] for t in tests])),
        retained=fig.estimate if fig else None,
        retained_ci=list(fig.ci) if fig else None,
        retained_p_direction=fig.p_direction if fig else None,
        curve=run_curve(store, run.rel),
        grid={a: list(getattr(search.cd.grid, a)) for a in METHODS[method].axes},
        at_edge=settled_edges(search.cd),
        seed_runs=runs,
        seed_losses=[t["test_loss"] for t in tests],
    )


def control_outcome(
    config: DistillConfig,
    store: Store,
    students: dict[str, Descent],
    tests: list[dict],
    runs: list[str],
    kept,
) -> ControlOutcome:
    method = config.control_method
    point = students[method].best
    return ControlOutcome(
        method=method,
        point=point._asdict(),
        steps=_steps(config.tokens, config.model.block_size, config.train.batch_size, point.epochs),
        seed_runs=runs,
        seed_losses=[t["test_loss"] for t in tests],
        test_loss=kept.losses["control"].estimate,
    )


REFERENCES = {
    "single": "the ensemble",
    "ensemble": "the single model",
    "control": "the single model",
    "students": "the single model",
    "retained": "0 (no gain kept)",
    "teacher_effect": "0 (the teachers add nothing beyond the control's compute)",
}
"""What each figure's p_direction compares it with."""


def assemble(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    val: dict,
    synthetic: DataRef | None,
    students: dict[str, Descent],
    runs: dict[str, list[str]],
    tests: dict[str, list[dict]],
    flow_run_id: str | None,
) -> DistillResult:
    """The result: test figures of the single model, the control, the ensemble and each chosen student
    (means over seeds), with the retained fraction of the ensemble's gain and hierarchical bootstrap
    intervals (seeds, then test windows)."""
    tests = dict(tests)
    loo = [np.asarray(t["windows"]) for t in tests.pop("ensemble_loo", [])]
    windows = {name: [np.asarray(t["windows"]) for t in ts] for name, ts in tests.items()}
    windows["ensemble"] = member_pseudo_seeds(windows["ensemble"][0], loo)
    ev = config.evaluation
    kept = retention(
        windows["single"],
        windows["ensemble"],
        {m: windows[m] for m in students},
        ev.n_boot,
        ev.level,
        ev.seed,
        control=windows.get("control"),
        control_of=config.control_method,
    )
    outcomes = {m: student_outcome(config, store, m, s, tests[m], runs[m], kept) for m, s in students.items()}
    control = (
        control_outcome(config, store, students, tests["control"], runs["control"], kept)
        if "control" in tests
        else None
    )
    teachers = teachers.model_copy(update={"seed_runs": runs["single"]})
    return DistillResult(
        flow_run_id=flow_run_id,
        data=data,
        teachers=teachers,
        single_loss=kept.losses["single"].estimate,
        ensemble_loss=kept.losses["ensemble"].estimate,
        single_bpb=float(np.mean([t["test_bpb"] for t in tests["single"]])),
        ensemble_bpb=tests["ensemble"][0]["test_bpb"],
        gain=kept.gain,
        gain_ci=list(kept.gain_ci),
        gain_resolved=kept.resolved,
        test_windows=len(windows["single"][0]),
        val=val,
        params=run_params(store, teachers.single),
        synthetic=synthetic,
        synthetic_tokens=(synthetic.n_train + synthetic.n_val) if synthetic else 0,
        students=outcomes,
        report_uri="",
        control=control,
        seeds={name: len(w) for name, w in windows.items()},
        seed_losses={name: [t["test_loss"] for t in ts] for name, ts in tests.items()},
        figures=kept.losses,
        retained_figures=kept.retained_figures,
        teacher_effect=kept.teacher_effect,
        resampled=kept.resampled,
        references=REFERENCES,
    )
