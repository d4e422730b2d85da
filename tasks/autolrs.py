"""Prefect task for AutoLRS: commit the schedule a run found as its own, replayable artifact.

The AutoLRS run itself is an ordinary TrainJob (driver "autolrs") trained by tasks.pretrain.train.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from asymptote.autolrs_config import PLOT, SCHEDULE, TRACE, ScheduleRef, trace_rel
from asymptote.refs import RunRef
from asymptote.reports.autolrs import plot_schedule, schedule_document
from asymptote.store import Store, layout
from asymptote.tasks.caching import cached
from asymptote.versioning import step_key


def schedule_ref(store: Store, rel: str, doc: dict) -> ScheduleRef:
    return ScheduleRef(
        rel=rel,
        uri=store.uri(rel, SCHEDULE),
        plot_uri=store.uri(rel, PLOT),
        steps=len(doc["lrs"]),
        trial_steps=doc["trial_steps_spent"],
        chosen_lrs=doc["chosen_lrs"],
        final_val_loss=doc["final_val_loss"],
    )


@task(name="autolrs-schedule", retries=1, retry_delay_seconds=5)
def publish_schedule_task(store: Store, run: RunRef, key: str) -> ScheduleRef:
    rel = layout("schedule", key=run.key)
    trace = store.read_json(trace_rel(run.rel), TRACE)
    doc = schedule_document(trace, run.uri)
    with store.writer(rel, kind="schedule", meta={"run": run.rel, "steps": len(doc["lrs"])}) as d:
        (d / SCHEDULE).write_text(json.dumps(doc))
        plot_schedule(doc, Path(d) / PLOT, title=f"AutoLRS: {run.name} ({run.key})")
    return schedule_ref(store, rel, doc)


def publish_schedule(store: Store, run: RunRef, refresh: bool = False) -> ScheduleRef:
    """schedules/<run key>: schedule.json (key "lrs" + stages, trials, losses) and schedule.png."""
    key = step_key(__name__, run=run.rel, what="autolrs-schedule")
    return cached(publish_schedule_task, store, refresh)(store, run, key=key)
