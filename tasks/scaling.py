"""Prefect tasks of the scaling study: coordinate descent over cached training runs, every run's
and every ensemble's evaluation, and the analysis as one cached step (a search run as a Ray Tune
experiment is `tuning.search`; the flow calls it).

Every run goes through `tasks.pretrain.submit_train` (cached by the run's key), so the points of a
descent, the members of an ensemble and anything else submitted together share the cluster, and a
second call of the study trains nothing.
"""

from __future__ import annotations

from typing import Callable

from prefect import task
from prefect.futures import PrefectFuture, as_completed

from asymptote.config import key_dict
from asymptote.infra.cluster import ray_ready
from asymptote.infra.launch import concurrent_runs
from asymptote.job_spec import TrainJob
from asymptote.member_bootstrap import MAX_MULTISET_MEMBERS
from asymptote.refs import RunRef
from asymptote.scaling import MAX_SUBSET_MEMBERS
from asymptote.scaling_analysis import analyse
from asymptote.scaling_config import Analysis, FitConfig, StudyData
from asymptote.scaling_plan import Descent, ensemble_sets
from asymptote.search_space import Point
from asymptote.store import Store
from asymptote.tasks.caching import cached, run_cached
from asymptote.tasks.ensembles import ensemble_eval, ensemble_multisets, ensemble_subsets
from asymptote.tasks.pretrain import evaluate_task, submit_train
from asymptote.versioning import step_key


def train_all(jobs: list[TrainJob], on_done: Callable[[int, int], None] | None = None) -> list[RunRef]:
    """Submit every job at once (one future per distinct key) and wait; Ray runs as many as fit.
    `on_done(finished, total)` hears of each distinct run as it finishes (a flow's progress bar)."""
    futures = {}
    for job in jobs:
        if job.key not in futures:
            futures[job.key] = submit_train(job)
    if on_done is not None:
        on_done(0, len(futures))
        for n, _ in enumerate(as_completed(list(futures.values())), 1):
            on_done(n, len(futures))
    return [futures[job.key].result() for job in jobs]


def evaluate_all(store: Store, runs: list[RunRef], data_rel: str) -> list[dict[str, float]]:
    """Validation and test losses of every run, evaluated concurrently; each cached under the same key as
    `tasks.pretrain.evaluate`, so a run evaluated anywhere else is not evaluated again."""
    futures = {}
    for run in runs:
        if run.rel not in futures:
            key = step_key("asymptote.tasks.pretrain", run=run.rel, data=data_rel, what="val_test_loss_bpb")
            futures[run.rel] = cached(evaluate_task, store).submit(store, run.rel, data_rel, key=key)
    return [futures[run.rel].result() for run in runs]


def evaluate_study(
    store: Store, refs: list[RunRef], members: dict[str, list[int]], data_rel: str
) -> tuple[list[dict[str, float]], dict[str, dict]]:
    """Every run's validation and test losses, and per size its members' ensembles on test (first-k
    curves, and every subset's or multiset's loss for small K), all submitted before any is waited for.
    `members`: size label -> indices of its members in refs."""
    groups = {label: [refs[i].rel for i in idx] for label, idx in members.items()}
    curves = {label: ensemble_eval(store, runs, data_rel, split="test") for label, runs in groups.items()}
    sets = {
        label: _member_sets(store, runs, data_rel)
        for label, runs in groups.items()
        if len(runs) <= MAX_SUBSET_MEMBERS
    }
    tests = evaluate_all(store, refs, data_rel)
    ensembles = {
        label: f.result() | ensemble_sets(sets[label].result() if label in sets else None)
        for label, f in curves.items()
    }
    return tests, ensembles


def _member_sets(store: Store, runs: list[str], data_rel: str):
    """Every multiset's loss per test block (what the member bootstrap needs) for small K, else every
    subset's loss on the whole test split."""
    if len(runs) <= MAX_MULTISET_MEMBERS:
        return ensemble_multisets(store, runs, data_rel, split="test")
    return ensemble_subsets(store, runs, data_rel, split="test")


def descend(descents: list[Descent], slots: int | None = None) -> None:
    """Advance every descent until each is certified (or hit its run cap).

    A descent submits all its pending points at once and asks for its next ones as soon as its own
    have finished, not when every other descent's have: its path depends only on its own results, so
    it is the path lock-step rounds would take, without cores idling at a shared barrier while a long
    search's last run finishes. While fewer runs are going than `slots` (default: as many as the
    cluster holds at once), the descents' spare points (CoordinateDescent.spare: what a line walk's
    certifying pass would need next) fill the idle capacity; they change no choice. Equal jobs are
    trained once."""
    if not descents:
        return
    slots = slots or _slots(descents)
    futures: dict[str, PrefectFuture] = {}  # by job key
    submitted: dict[tuple[int, Point], PrefectFuture] = {}
    waiting: dict[int, list[Point]] = {}  # descent -> the points its next step needs
    done: set[PrefectFuture] = set()

    def submit(i: int, p: Point) -> bool:
        """Submit descent i's point p unless it already is; whether this call submitted it."""
        if (i, p) in submitted:
            return False
        job = descents[i].job(p)
        if job.key not in futures:
            futures[job.key] = submit_train(job)
        submitted[i, p] = futures[job.key]
        return True

    def running() -> set[PrefectFuture]:
        return set(submitted.values()) - done

    def advance(i: int) -> None:
        waiting.pop(i, None)
        if pending := descents[i].cd.pending():
            waiting[i] = pending
            for p in pending:
                submit(i, p)

    for i in range(len(descents)):
        advance(i)
    while waiting or running():  # spare runs still going are waited for
        for i in list(waiting):
            for p in descents[i].cd.spare():
                if len(running()) >= slots:
                    break
                if submit(i, p):
                    descents[i].spares.add(p)
        if going := running():
            done.add(next(as_completed(list(going))))
        for (i, p), future in submitted.items():
            d = descents[i]
            if future in done and p not in d.runs:
                d.runs[p] = ref = future.result()
                d.cd.record(p, ref.summary.get("val_loss", float("nan")))
        for i in [i for i, need in waiting.items() if all(p in descents[i].runs for p in need)]:
            advance(i)


def _slots(descents: list[Descent]) -> int:
    """How many of these descents' runs the cluster holds at once (from their first point's job)."""
    d = descents[0]
    ray_ready()
    return concurrent_runs(d.job(d.cd.start).compute)


# ----------------------------------------------------------------------------- the analysis


@task(name="scaling-analysis")
def analysis_task(measured: StudyData, fits: FitConfig, key: str) -> Analysis:
    return analyse(measured, fits)


def analyse_study(store: Store, measured: StudyData, fits: FitConfig, refresh: bool = False) -> Analysis:
    """The fits, bootstraps and verdicts over the measured losses, as a cached step: the bootstraps
    refit thousands of times (seconds), and a call whose every run is cached must not redo them."""
    body = measured.model_dump(mode="json")
    key = step_key("asymptote.scaling_analysis", study=body, fits=key_dict(fits))
    return run_cached(analysis_task, store, measured, fits, key=key, refresh=refresh)
