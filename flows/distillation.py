"""Ensemble distillation: one model of the single model's size that keeps most of the ensemble's gain.

1. Teachers: K members of the student's size, either runs already in the store (any checkpoints, e.g.
   the scaling study's ensembles) or trained here with the regularized recipe (member i = seeds + i;
   member 0 is the regularized single model, the baseline L_single).
2. Evaluate the single model and the ensemble on the validation split (one member in memory at a time).
3. Sample synthetic sequences from the ensemble's averaged logits (and from the single model for
   self-distillation): a Ray job over every worker, committed as token shards.
4. Train students from scratch, one per method: sequence-level on a synthetic/real mix (the paper),
   synthetic only (to see what it does), token-level KL to the averaged teachers, self-distillation.
5. retained = (L_single - L_student) / (L_single - L_ensemble); a report with a comparison plot.
Every step is a cached Prefect task keyed by what can change its result: a second call trains nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import methods, preflight
from asymptote.config import (
    ModelConfig,
    key_dict,
    stable_hash,
)
from asymptote.distill_config import METHODS, DistillConfig
from asymptote.infra.cluster import compute_session
from asymptote.job import TrainJob, make_job
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.distill import plot_comparison, run_params, sample
from asymptote.tasks.ensembles import ensemble_eval
from asymptote.tasks.pretrain import prepare_data, submit_train
from asymptote.tasks.reports import Report, md_table, publish_report, shift_headings

STEPS = methods.METHODS["distill"].steps


class Teachers(BaseModel):
    single: str
    """Store-relative path of the single model."""
    members: list[str]
    """Store-relative paths of the ensemble members."""
    trained_here: bool


class StudentOutcome(BaseModel):
    method: str
    run: RunRef
    val_loss: float
    retained: float | None
    """(L_single - L_student) / (L_single - L_ensemble); None when the ensemble does not beat the single model."""


class DistillResult(BaseModel):
    """What `distill` returns: references into the store and every loss."""

    flow_run_id: str | None
    data: DataRef
    teachers: Teachers
    single_loss: float
    ensemble_loss: float
    member_losses: list[float]
    ensemble_curve: list[float]
    """Loss of the first-k ensemble, k = 1..K."""
    params: int
    """Parameters of the single model (= each member = each student)."""
    synthetic: dict[str, DataRef]
    students: dict[str, StudentOutcome]
    report_uri: str

    @property
    def retained(self) -> dict[str, float | None]:
        return {m: s.retained for m, s in self.students.items()}


# ----------------------------------------------------------------------------- steps


def member_job(config: DistillConfig, store: Store, data: DataRef, i: int, hub: str | None) -> TrainJob:
    base = config.teacher.train
    train = base.model_copy(update={"train_seed": base.train_seed + i, "data_seed": base.data_seed + i})
    return make_job(
        name=f"{config.name}-member-{i}",
        model=config.model,
        data=config.data,
        train=train,
        data_artifact=data.rel,
        compute=config.compute,
        store=store.cfg,
        progress_hub=hub,
    )


def select_teachers(
    config: DistillConfig, store: Store, data: DataRef, hub: str | None, refresh: bool
) -> Teachers:
    t = config.teacher
    single = store.model_ref(t.single, "teacher.single") if t.single else None
    if t.members:
        members = [store.model_ref(m, f"teacher.members[{i}]") for i, m in enumerate(t.members)]
    else:
        futures = [submit_train(member_job(config, store, data, i, hub), refresh) for i in range(t.n_members)]
        members = [f.result().rel for f in futures]
    return Teachers(single=single or members[0], members=members, trained_here=not t.members)


def synthetic_sets(
    config: DistillConfig, store: Store, teachers: Teachers, data: DataRef, refresh: bool
) -> dict[str, DataRef]:
    """Sample once per teacher kind that a chosen method needs (ensemble and/or single)."""
    needed = {METHODS[m].teacher for m in config.student.methods if METHODS[m].level == "sequence"}
    runs = {"ensemble": teachers.members, "single": [teachers.single]}
    length = config.model.block_size + 1
    return {
        kind: sample(store, runs[kind], data.rel, config.sampling, length, refresh) for kind in sorted(needed)
    }


def student_job(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    method: str,
    teachers: Teachers,
    synthetic: dict[str, DataRef],
    hub: str | None,
) -> TrainJob:
    m, s = METHODS[method], config.student
    runs = teachers.members if m.teacher == "ensemble" else [teachers.single]
    if m.level == "token":
        extra = {
            "objective": {
                "kind": "token_kl",
                "teachers": runs,
                "temperature": s.kl_temperature,
                "alpha": s.kl_alpha,
                "combine": config.sampling.combine,
            }
        }
    else:
        weight = s.synthetic_weight if m.synthetic_weight is None else m.synthetic_weight
        extra = {"batches": {"kind": "mixture", "synthetic": synthetic[m.teacher].rel, "weight": weight}}
    return make_job(
        name=f"{config.name}-student-{method}",
        model=config.model,
        data=config.data,
        train=s.train,
        data_artifact=data.rel,
        compute=config.compute,
        store=store.cfg,
        progress_hub=hub,
        **extra,
    )


def retained(single: float, ensemble: float, student: float) -> float | None:
    gain = single - ensemble
    return (single - student) / gain if gain > 0 else None


# ----------------------------------------------------------------------------- the flow


@flow(name="distill", log_prints=True)
def distill(config: DistillConfig | None = None, recompute: list[str] | None = None) -> DistillResult:
    """Teachers -> evaluate -> sample -> students -> retained fraction -> report."""
    config = config or DistillConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store, refresh="data" in recompute)
        teachers = select_teachers(config, store, data, hub, "teachers" in recompute)
        check_single_shape(store, teachers.single, config.model)
        losses = teacher_losses(store, teachers, data, config.sampling.combine, "evaluate" in recompute)
        synthetic = synthetic_sets(config, store, teachers, data, "sample" in recompute)
        jobs = {
            m: student_job(config, store, data, m, teachers, synthetic, hub) for m in config.student.methods
        }
        futures = {m: submit_train(job, "students" in recompute) for m, job in jobs.items()}
        runs = {m: f.result() for m, f in futures.items()}
        evals = {
            m: ensemble_eval(store, [r.rel], data.rel) for m, r in runs.items()
        }  # evaluated concurrently
        student_losses = {m: f.result()["member"][0] for m, f in evals.items()}
    students = {
        m: StudentOutcome(
            method=m,
            run=runs[m],
            val_loss=loss,
            retained=retained(losses["single_loss"], losses["ensemble_loss"], loss),
        )
        for m, loss in student_losses.items()
    }
    result = DistillResult(
        flow_run_id=flow_run.id,
        data=data,
        teachers=teachers,
        params=run_params(store, teachers.single),
        synthetic=synthetic,
        students=students,
        report_uri="",
        **losses,
    )
    rendered = report(config, result, store)
    result.report_uri = publish_report(
        store, "distill", stable_hash(key_dict(config)), rendered.markdown, rendered.files
    )
    return result


def teacher_losses(
    store: Store, teachers: Teachers, data: DataRef, how: str, refresh: bool
) -> dict[str, Any]:
    """Validation losses of each member, of the first-k ensembles and of the single model."""
    ens = ensemble_eval(store, teachers.members, data.rel, refresh).result()
    if teachers.single in teachers.members:
        single = ens["member"][teachers.members.index(teachers.single)]
    else:
        single = ensemble_eval(store, [teachers.single], data.rel, refresh).result()["member"][0]
    return {
        "single_loss": single,
        "ensemble_loss": ens[how][-1],
        "member_losses": ens["member"],
        "ensemble_curve": ens[how],
    }


def check_single_shape(store: Store, single: str, model: ModelConfig) -> None:
    """retained compares a student with the single model of its own size: refuse a mismatch."""
    theirs = ModelConfig.model_validate(store.manifest(single).meta["model"]).model_dump(exclude={"preset"})
    if theirs != model.model_dump(exclude={"preset"}):
        raise ValueError(
            f"teacher.single {single} has shape {theirs}, the student {model.model_dump()}; "
            "set model to the single model's shape (the student must match it)"
        )


# ----------------------------------------------------------------------------- report


def comparison_rows(result: DistillResult) -> list[dict[str, Any]]:
    k, p = len(result.teachers.members), result.params
    rows = [
        {"model": "single", "kind": "single", "params": p, "val_loss": result.single_loss, "retained": ""},
        {
            "model": f"ensemble x{k}",
            "kind": "ensemble",
            "params": k * p,
            "val_loss": result.ensemble_loss,
            "retained": 1.0,
        },
    ]
    for m, s in result.students.items():
        kept = "n/a" if s.retained is None else round(s.retained, 3)
        rows.append(
            {
                "model": f"student: {m}",
                "kind": "student",
                "params": p,
                "val_loss": s.val_loss,
                "retained": kept,
            }
        )
    return rows


def report(
    config: DistillConfig, result: DistillResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    """The report's markdown and its comparison plot."""
    plot = f"{prefix}compare.png"
    markdown = shift_headings(distill_markdown(config, result, store, plot), level - 1)
    return Report(markdown, {plot: comparison_png(config, result)}, figures(result))


def summary(result: DistillResult) -> tuple[dict, str]:
    kept = ", ".join(f"{m} {'n/a' if r is None else f'{r:.2f}'}" for m, r in result.retained.items())
    line = f"single {result.single_loss:.4f}, ensemble {result.ensemble_loss:.4f}; retained: {kept}"
    return figures(result), line


def comparison_png(config: DistillConfig, result: DistillResult) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compare.png"
        k = len(result.teachers.members)
        plot_comparison(
            comparison_rows(result), path, title=f"{config.name}: single vs ensemble x{k} vs students"
        )
        return path.read_bytes()


def distill_markdown(config: DistillConfig, result: DistillResult, store: Store, plot_name: str) -> str:
    k, p = len(result.teachers.members), result.params
    source = "trained here" if result.teachers.trained_here else "taken from the store"
    no_gain = (
        ""
        if result.single_loss > result.ensemble_loss
        else ("\n**The ensemble does not beat the single model here, so no retained fraction is defined.**\n")
    )
    links = [
        f"- synthetic ({kind}): `{ref.uri}` ({ref.n_train + ref.n_val:,} tokens sampled at temperature "
        f"{config.sampling.temperature})"
        for kind, ref in result.synthetic.items()
    ]
    links += [f"- single: `{store.uri(result.teachers.single)}`"]
    links += [f"- student {m}: `{s.run.uri}`" for m, s in result.students.items()]
    return (
        f"# Ensemble distillation: {config.name}\n\n{k} members ({source}) of {p:,} parameters each; every "
        f"student has the single model's size, 1/{k} of the ensemble's {k * p:,} parameters.\n\n"
        f"{md_table(comparison_rows(result), ['model', 'params', 'val_loss', 'retained'])}\n{no_gain}\n"
        "- retained = (L_single - L_student) / (L_single - L_ensemble); the paper keeps 0.83 of an 8-member "
        f"ensemble's gain.\n- ensemble of the first k members: {', '.join(f'{v:.4f}' for v in result.ensemble_curve)}\n"
        + "\n".join(links)
        + f"\n\n![single vs ensemble vs students]({plot_name})\n"
    )


def figures(result: DistillResult) -> dict[str, Any]:
    return {
        "single": result.single_loss,
        "ensemble": result.ensemble_loss,
        "members": len(result.teachers.members),
        "students": {m: s.val_loss for m, s in result.students.items()},
        "retained": result.retained,
    }
