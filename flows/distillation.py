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
   epoch's grid shift does. The single model's search spans the students' axes and run cap; with
   edges.extend, a search whose choice sits on a grid edge grows that grid and goes on.
4. Seeds: the single model and each chosen student retrained at their chosen settings (`seeds`), and
   the no-teacher control (real text only, at the `control` student's settings and compute).
5. Figures on the test split, which no choice has seen: the single model, the control, the ensemble,
   each chosen student, and retained = (L_single - L_student) / (L_single - L_ensemble), with
   hierarchical bootstrap intervals (seeds, then test windows). When the ensemble's own gain is
   within its noise, no fraction is given.
Every run and evaluation is a cached Prefect task: a second call trains nothing. Which runs to train
is planned in asymptote/distill_plan.py; the report is asymptote/reports/distill.py.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from asymptote import preflight
from asymptote.config import key_dict, stable_hash
from asymptote.distill_config import DistillConfig, DistillResult, Teachers
from asymptote.distill_plan import (
    arm_runs,
    assemble,
    check_data,
    check_single_shape,
    grown,
    member_jobs,
    replica_jobs,
    sampling_spec,
    single_descent,
    student_descents,
    val_figures,
)
from asymptote.distill_search import leave_one_out, settled_edges
from asymptote.flows.registry import METHODS
from asymptote.flows.reporting import Progress, method_report, publish_report, publish_results
from asymptote.infra.cluster import compute_session
from asymptote.infra.tracking import log_models
from asymptote.refs import DataRef
from asymptote.scaling_plan import Descent
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.distill import sample, test_eval
from asymptote.tasks.ensembles import ensemble_eval
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.scaling import descend, train_all

STEPS = METHODS["distill"].steps


@flow(name="distill", log_prints=True)
def distill(config: DistillConfig | None = None, recompute: list[str] | None = None) -> DistillResult:
    """Data -> teachers -> evaluate -> sample -> students (searched on validation) -> test figures -> report."""
    config = config or DistillConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = checked_recompute(recompute)
    store, how = Store(config.store), config.sampling.combine
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store, refresh="data" in recompute)
        check_data(config, data)
        teachers = select_teachers(config, store, data, hub)
        check_single_shape(store, teachers.single, config.model)
        val = ensemble_eval(store, teachers.members, data.rel, "evaluate" in recompute)
        synthetic = sample_synthetic(config, store, teachers, data, "sample" in recompute)
        students = train_students(config, store, data, teachers, synthetic, hub)
        runs = train_seeds(config, store, data, teachers, students, synthetic, hub)
        tests = test_figures(store, runs, data, how)
        val = val_figures(val.result(), teachers, store, how)
    result = assemble(config, store, data, teachers, val, synthetic, students, runs, tests, flow_run.id)
    rendered = method_report("distill", config, result, store)
    result.report_uri = publish_report(
        store, "distill", stable_hash(key_dict(config)), rendered.markdown, rendered.files
    )
    publish_results("distill", config, result, store, result.report_uri)
    log_models(store.cfg, store, result.tracked_models())  # the ensemble is an MLflow run too, if tracked
    return result


def checked_recompute(recompute: list[str] | None) -> list[str]:
    """The steps to recompute; teachers and students are searches whose points are cached runs."""
    recompute = check_recompute(recompute or [], STEPS)
    if {"teachers", "students"} & set(recompute):
        raise ValueError(
            "recompute teachers/students: their runs are the cached points of certified searches; "
            "delete the runs/<key> folders to retrain them (recompute data, evaluate, sample work)"
        )
    return recompute


def select_teachers(config: DistillConfig, store: Store, data: DataRef, hub: str | None) -> Teachers:
    """The given runs, or the certified single model and K members trained (or reused) here."""
    t = config.teacher
    if t.members:
        members = [store.model_ref(m, f"teacher.members[{i}]") for i, m in enumerate(t.members)]
        single = store.model_ref(t.single, "teacher.single") if t.single else None
        if single:
            return Teachers(single=single, members=members, trained_here=False)
    descent = single_descent(config, store, data, hub)
    search(config, [descent], single=True)
    best = descent.best
    if not t.members:
        jobs = member_jobs(config, store, data, best, hub)
        members = [r.rel for r in train_all(jobs, on_done=Progress("distill", config, "teacher members"))]
    return Teachers(
        single=descent.runs[best].rel,
        members=members,
        trained_here=not t.members,
        single_point=best._asdict(),
        certified=descent.cd.certified,
        search_points=len(descent.cd.results),
        grid={a: list(getattr(descent.cd.grid, a)) for a in descent.cd.axes},
        at_edge=settled_edges(descent.cd),
    )


def search(config: DistillConfig, descents: list[Descent], single: bool = False) -> None:
    """Run the searches until each is certified; one whose choice sits on a grid edge grows its grid
    (edges.extend) and goes on, until interior or at a hard limit."""
    while descents:
        descend(descents)
        descents = grown(config, descents, single)


def sample_synthetic(
    config: DistillConfig, store: Store, teachers: Teachers, data: DataRef, refresh: bool
) -> DataRef | None:
    """Synthetic text from the ensemble, once, at the largest amount any student may use (None: no
    chosen method uses it)."""
    if not config.sequences_needed():
        return None
    return sample(
        store, teachers.members, data.rel, sampling_spec(config), config.model.block_size + 1, refresh
    )


def train_students(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    synthetic: DataRef | None,
    hub: str | None,
) -> dict[str, Descent]:
    """Each method's certified search on validation, the searches run side by side."""
    descents = student_descents(config, store, data, teachers, synthetic, hub)
    search(config, list(descents.values()))
    return descents


def train_seeds(
    config: DistillConfig,
    store: Store,
    data: DataRef,
    teachers: Teachers,
    students: dict[str, Descent],
    synthetic: DataRef | None,
    hub: str | None,
) -> dict[str, list[str]]:
    """The seed replicas and the no-teacher control, trained together; per arm its runs, one per seed."""
    jobs = replica_jobs(config, store, data, teachers, students, synthetic, hub)
    flat = [j for arm in jobs.values() for j in arm]
    refs = iter(train_all(flat))  # no progress artifact: the flow's bar stays the members' (one key)
    replicas = {arm: [next(refs).rel for _ in arm_jobs] for arm, arm_jobs in jobs.items()}
    return arm_runs(teachers, students, replicas)


def test_figures(store: Store, runs: dict[str, list[str]], data: DataRef, how: str) -> dict[str, list[dict]]:
    """Test-split loss of every arm's runs, seed by seed and window by window (the ensemble: its
    members together, and each ensemble of all members but one: its member noise)."""
    futures = {
        arm: [test_eval(store, rels, data.rel, how)]
        if arm == "ensemble"
        else [test_eval(store, [r], data.rel, how) for r in rels]
        for arm, rels in runs.items()
    }
    futures["ensemble_loo"] = [test_eval(store, g, data.rel, how) for g in leave_one_out(runs["ensemble"])]
    return {arm: [f.result() for f in fs] for arm, fs in futures.items()}
