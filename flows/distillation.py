"""Ensemble distillation: one model of the single model's size that keeps most of the ensemble's gain.

1. Teachers, exactly as the scaling study makes them (same template, grid and member recipe, so its
   runs are reused from the store): the single model is the certified optimum of the regularized
   recipe on validation; the K members train at its learning rate with epochs x2 and weight decay
   x0.5 (the paper's member recipe), member k with train_seed = data_seed = k.
2. Synthetic text: sampled from the ensemble's averaged logits on every worker of the cluster,
   once, at the largest amount any student may use; committed as token shards like any corpus.
3. Students with compute to spare, one per method (sequence: synthetic mixed with real under
   cross-entropy; token_kl: KL to the ensemble's distribution on real text; combined: KL on real and
   synthetic tokens). Each method's epochs, weight decay, learning rate (a multiple of the single
   model's), synthetic amount, mixing weight and KL weight are chosen by a certified coordinate
   descent on validation. A token-level student keeps its teachers' outputs on windows it has seen
   in memory (compute.teacher_cache_mb): synthetic windows recur every epoch, real ones whenever an
   epoch's grid shift does.
4. Figures on the test split, which no choice has seen: the single model, the ensemble, each chosen
   student, and retained = (L_single - L_student) / (L_single - L_ensemble) with a paired bootstrap
   interval over test windows. When the ensemble's own gain is within its noise, no fraction is given.
Every run and evaluation is a cached Prefect task: a second call trains nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import methods, preflight
from asymptote.config import DataConfig, ModelConfig, TrainConfig, key_dict, stable_hash
from asymptote.distill_config import METHODS, DistillConfig, StudentPoint
from asymptote.distill_search import StudentDescent, retention, student_start
from asymptote.infra.cluster import compute_session
from asymptote.job_spec import TrainJob, make_job
from asymptote.refs import DataRef, RunRef
from asymptote.scaling import CoordinateDescent, member_train, point_job
from asymptote.search_space import RECIPES, Point, at_edges
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.distill import plot_comparison, plot_curves, run_curve, run_params, sample, test_eval
from asymptote.tasks.ensembles import ensemble_eval
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.reports import Report, md_table, method_report, publish_report, shift_headings
from asymptote.tasks.scaling import Descent, descend, train_all

STEPS = methods.METHODS["distill"].steps


class Teachers(BaseModel):
    single: str
    """Store-relative path of the single model."""
    members: list[str]
    """Store-relative paths of the ensemble members."""
    trained_here: bool
    """False when the runs were given in teacher.members (a run reused from the store is still 'here')."""
    single_point: dict[str, float] | None = None
    """The certified regularized optimum (lr, weight_decay, epochs), when searched here."""
    certified: bool | None = None
    search_points: int = 0


class StudentOutcome(BaseModel):
    method: str
    run: RunRef
    point: dict[str, float]
    """The chosen settings (axes a method does not use keep their start values)."""
    certified: bool
    points: int
    """Distinct settings the search trained."""
    steps: int
    """Optimiser steps of the chosen student."""
    search_steps: int
    """Optimiser steps of every run the search trained (what choosing it cost)."""
    synthetic_tokens: int
    """Synthetic training tokens the chosen student drew from (0: none)."""
    val_loss: float
    test_loss: float
    test_bpb: float
    retained: float | None
    """(L_single - L_student) / (L_single - L_ensemble) on test; None when the ensemble's gain is within its noise."""
    retained_ci: list[float] | None
    curve: list[tuple[int, float]]
    """(step, validation loss) along the chosen run."""


class DistillResult(BaseModel):
    """What `distill` returns: references into the store and every loss (figures on the test split)."""

    flow_run_id: str | None
    data: DataRef
    teachers: Teachers
    split: str = "test"
    single_loss: float
    ensemble_loss: float
    single_bpb: float
    ensemble_bpb: float
    gain: float
    gain_ci: list[float]
    gain_resolved: bool
    """False when the ensemble's gain's interval includes 0: retained is then not defined."""
    test_windows: int
    val: dict[str, Any]
    """Validation losses: single, ensemble, each member, the first-k ensembles (the scaling study's figures)."""
    params: int
    """Parameters of the single model (= each member = each student)."""
    synthetic: DataRef | None
    synthetic_tokens: int
    """Tokens sampled from the ensemble (training and validation shares of the artifact)."""
    students: dict[str, StudentOutcome]
    report_uri: str

    @property
    def member_losses(self) -> list[float]:
        return self.val["member_losses"]

    @property
    def retained(self) -> dict[str, float | None]:
        return {m: s.retained for m, s in self.students.items()}

    def ranked(self) -> list[StudentOutcome]:
        return sorted(self.students.values(), key=lambda s: s.test_loss)


# ----------------------------------------------------------------------------- teachers


def data_at(config: DistillConfig) -> DataConfig:
    """The corpus cut to the budget, as the scaling study's Study.data_at builds it (equal job keys)."""
    return DataConfig.model_validate(config.data.model_dump() | {"max_train_tokens": config.tokens})


def volatile(config: DistillConfig, store: Store, hub: str | None, name: str) -> dict[str, Any]:
    return {"name": name, "compute": config.compute, "store": store.cfg, "progress_hub": hub}


def single_descent(config: DistillConfig, store: Store, data: DataRef, hub: str | None) -> Descent:
    """The scaling study's regularized search at the student's size and budget."""
    s = config.search.start
    cd = CoordinateDescent(
        config.search.grid,
        RECIPES["regularized"],
        Point(s.lr, s.weight_decay, s.epochs),
        max_runs=config.search.max_runs,
    )

    def job(p: Point) -> TrainJob:
        v = volatile(config, store, hub, f"{config.name} single {p.label()}")
        return point_job(config.model, data_at(config), data.rel, config.train, p, **v)

    return Descent(name=f"{config.name} regularized", cd=cd, job=job)


def member_jobs(
    config: DistillConfig, store: Store, data: DataRef, best: Point, hub: str | None
) -> list[TrainJob]:
    e = config.ensemble
    return [
        make_job(
            model=config.model,
            data=data_at(config),
            data_artifact=data.rel,
            train=member_train(config.train, best, k, e.epoch_factor, e.weight_decay_factor),
            **volatile(config, store, hub, f"{config.name} member {k}"),
        )
        for k in range(1, e.members + 1)
    ]


def select_teachers(config: DistillConfig, store: Store, data: DataRef, hub: str | None) -> Teachers:
    t = config.teacher
    if t.members:
        members = [store.model_ref(m, f"teacher.members[{i}]") for i, m in enumerate(t.members)]
        single = store.model_ref(t.single, "teacher.single") if t.single else None
        if single:
            return Teachers(single=single, members=members, trained_here=False)
    descent = single_descent(config, store, data, hub)
    descend([descent])
    best = descent.best
    if not t.members:
        members = [r.rel for r in train_all(member_jobs(config, store, data, best, hub))]
    return Teachers(
        single=descent.runs[best].rel,
        members=members,
        trained_here=not t.members,
        single_point=best._asdict(),
        certified=descent.cd.certified,
        search_points=len(descent.cd.results),
    )


# ----------------------------------------------------------------------------- students


def student_train(config: DistillConfig, point: StudentPoint, lr: float) -> TrainConfig:
    """The template at the point's multiple of the single model's learning rate `lr`, with the
    point's epochs and weight decay; the run evaluates curve_points times (its learning curve)."""
    from asymptote.data import steps_for  # here: asymptote.data imports torch, a cached call needs none

    total = steps_for(config.tokens, config.model.block_size, config.train.batch_size, point.epochs, None)
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
        **volatile(config, store, hub, f"{config.name} student {method} {point.label()}"),
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
    single = store.manifest(teachers.single).meta["config"]["train"]
    e = config.ensemble
    start = student_start(
        config.student.grid,
        config.student.start,
        single["epochs"] * e.epoch_factor,
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


# ----------------------------------------------------------------------------- the flow


@flow(name="distill", log_prints=True)
def distill(config: DistillConfig | None = None, recompute: list[str] | None = None) -> DistillResult:
    """Teachers -> sample -> students (searched on validation) -> test figures -> report."""
    config = config or DistillConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    if {"teachers", "students"} & set(recompute):
        raise ValueError(
            "recompute teachers/students: their runs are the cached points of certified searches; "
            "delete the runs/<key> folders to retrain them (recompute data, evaluate, sample work)"
        )
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store, refresh="data" in recompute)
        _check_data(config, data)
        teachers = select_teachers(config, store, data, hub)
        check_single_shape(store, teachers.single, config.model)
        val = ensemble_eval(store, teachers.members, data.rel, "evaluate" in recompute)
        synthetic = None
        if config.sequences_needed():
            spec = config.sampling.model_copy(update={"n_sequences": config.sequences_needed()})
            length = config.model.block_size + 1
            synthetic = sample(store, teachers.members, data.rel, spec, length, "sample" in recompute)
        descents = student_descents(config, store, data, teachers, synthetic, hub)
        descend(list(descents.values()))
        how = config.sampling.combine
        groups = {"single": [teachers.single], "ensemble": teachers.members}
        groups |= {m: [d.runs[d.best].rel] for m, d in descents.items()}
        tests = {
            name: f.result()
            for name, f in {n: test_eval(store, r, data.rel, how) for n, r in groups.items()}.items()
        }
        val = _val_figures(val.result(), teachers, store, data, how)
    result = assemble(config, store, data, teachers, val, synthetic, descents, tests)
    rendered = method_report("distill", config, result, store)
    result.report_uri = publish_report(
        store, "distill", stable_hash(key_dict(config)), rendered.markdown, rendered.files
    )
    return result


def _val_figures(ens: dict, teachers: Teachers, store: Store, data: DataRef, how: str) -> dict[str, Any]:
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


def assemble(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    val: dict,
    synthetic: DataRef | None,
    descents: dict[str, Descent],
    tests: dict[str, dict],
) -> DistillResult:
    import numpy as np

    windows = {name: np.asarray(t["windows"]) for name, t in tests.items()}
    ev = config.evaluation
    kept = retention(
        windows["single"],
        windows["ensemble"],
        {m: windows[m] for m in descents},
        ev.n_boot,
        ev.level,
        ev.seed,
    )
    students = {}
    for m, d in descents.items():
        run, best = d.runs[d.best], d.best
        ci = kept.retained_ci[m]
        students[m] = StudentOutcome(
            method=m,
            run=run,
            point=best._asdict(),
            certified=d.cd.certified,
            points=len(d.cd.results),
            steps=int(run.summary.get("steps", 0)),
            search_steps=sum(int(r.summary.get("steps", 0)) for r in d.runs.values()),
            synthetic_tokens=config.synthetic_tokens(best.synthetic) if METHODS[m].synthetic else 0,
            val_loss=d.cd.results[best],
            test_loss=tests[m]["test_loss"],
            test_bpb=tests[m]["test_bpb"],
            retained=kept.retained[m],
            retained_ci=list(ci) if ci else None,
            curve=run_curve(store, run.rel),
        )
    return DistillResult(
        flow_run_id=flow_run.id,
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
        students=students,
        report_uri="",
    )


def _check_data(config: DistillConfig, data: DataRef) -> None:
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


# ----------------------------------------------------------------------------- report


def _fmt_kept(s: StudentOutcome) -> str:
    if s.retained is None:
        return "n/a"
    return f"{s.retained:.3f} [{s.retained_ci[0]:.3f}, {s.retained_ci[1]:.3f}]"


def comparison_rows(result: DistillResult) -> list[dict[str, Any]]:
    k, p = len(result.teachers.members), result.params
    rows = [
        {"model": "single", "kind": "single", "params": p, "test_loss": result.single_loss, "retained": ""},
        {
            "model": f"ensemble x{k}",
            "kind": "ensemble",
            "params": k * p,
            "test_loss": result.ensemble_loss,
            "retained": 1.0,
        },
    ]
    for s in result.ranked():
        rows.append(
            {
                "model": f"student: {s.method}",
                "kind": "student",
                "params": p,
                "test_loss": s.test_loss,
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
    return at_edges(s.point, config.student.grid, config.student.axes(s.method))


def single_edges(config: DistillConfig, t: Teachers) -> list[str]:
    """The single model's searched axes at its grid's edge (none when the teachers were given)."""
    return at_edges(t.single_point, config.search.grid, RECIPES["regularized"]) if t.single_point else []


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
    kept = ", ".join(f"{m} {'n/a' if r is None else f'{r:.2f}'}" for m, r in result.retained.items())
    line = f"test: single {result.single_loss:.4f}, ensemble {result.ensemble_loss:.4f}; retained: {kept}"
    if not result.gain_resolved:
        line += " (the ensemble's gain is within its noise)"
    return figures(result), line


def _png(draw) -> bytes:
    import tempfile
    from pathlib import Path

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
    text = (
        f"- ensemble gain on test: {result.gain:.4f} nats/token, 95% interval [{lo:.4f}, {hi:.4f}] "
        f"over {result.test_windows} test windows (paired bootstrap)\n"
    )
    if not result.gain_resolved:
        text += (
            "\n**The ensemble's gain over the single model is within its own noise (its interval includes 0), "
            "so no retained fraction is reported: dividing by it would be meaningless.**\n"
        )
    return text


def distill_markdown(
    config: DistillConfig, result: DistillResult, store: Store, plot_name: str, curves_name: str
) -> str:
    t, k, p = result.teachers, len(result.teachers.members), result.params
    if t.single_point:
        sp, edges = Point(**t.single_point), single_edges(config, t)
        source = (
            f"the single model is the regularized optimum {sp.label()} "
            f"({'certified' if t.certified else 'NOT certified (run cap)'}, {t.search_points} points"
            f"{'; at the grid edge on ' + ', '.join(edges) + ': a larger grid may move it' if edges else ''}"
            "); members "
            f"at {config.ensemble.epoch_factor:g}x its epochs and {config.ensemble.weight_decay_factor:g}x its "
            "weight decay, seed = member index"
        )
    else:
        source = "teachers given as runs"
    val = result.val
    links = [f"- single: `{store.uri(t.single)}`"]
    if result.synthetic:
        links += [
            f"- synthetic: `{result.synthetic.uri}` ({result.synthetic_tokens:,} tokens sampled from the ensemble "
            f"at temperature {config.sampling.temperature})"
        ]
    links += [f"- student {s.method}: `{s.run.uri}`" for s in result.ranked()]
    return (
        f"# Ensemble distillation: {config.name}\n\n{k} members of {p:,} parameters each ({source}); every "
        f"student has the single model's size, 1/{k} of the ensemble's {k * p:,} parameters. Every choice "
        "(the single model, each student's settings) was made on validation; the figures below are on the "
        "test split.\n\n"
        f"{md_table(comparison_rows(result), ['model', 'params', 'test_loss', 'retained'])}\n\n"
        f"{_gain_line(result)}\n"
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
        "ensemble": result.ensemble_loss,
        "members": len(result.teachers.members),
        "gain_ci": result.gain_ci,
        "gain_resolved": result.gain_resolved,
        "students": {m: s.test_loss for m, s in result.students.items()},
        "retained": result.retained,
        "retained_ci": {m: s.retained_ci for m, s in result.students.items()},
    }
