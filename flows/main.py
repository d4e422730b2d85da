"""The main job: one corpus, one store, a recipe of method steps, one report at the end.

`asymptote run` (and `make demo`) calls this with the `main` recipe. The steps are the methods of the
registry (asymptote.methods): each runs as a subflow on its section of the recipe, receives the
outputs of the steps before it that it consumes (its registry entry's `inputs`), and hands back its
result and report section. Every training run inside is cached, so running the job again reuses
everything it already made; a step whose config, corpus and code are unchanged is not even started
(tasks/stage_memo.py).
"""

from __future__ import annotations

import functools
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import preflight
from asymptote.config import (
    key_dict,
    stable_hash,
)
from asymptote.infra.cluster import compute_session
from asymptote.main_config import MainConfig
from asymptote.methods import METHODS, load
from asymptote.store import Store
from asymptote.tasks.reports import method_report, publish_report
from asymptote.tasks.stage_memo import reuse_or_run


class MainResult(BaseModel):
    flow_run_id: str | None
    report_uri: str
    store_uri: str
    figures: dict[str, dict[str, Any]]
    """Headline figures per step."""


@flow(name="main", log_prints=True)
def main_job(config: MainConfig | None = None) -> MainResult:
    """Run every step of the recipe and publish one report naming where results and plots are."""
    config = config or MainConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    store = Store(config.store)
    results: dict[str, BaseModel] = {}
    sections = []
    with compute_session(config.compute.ray_address):
        for name in config.steps:
            method = METHODS[name]
            step_config = config.step_config(name)
            if method.inputs:
                step_config = load(method.inputs)(step_config, results)
            # the step's flow is not even started when its stored result still holds
            run = functools.partial(load(method.flow), step_config)
            results[name] = reuse_or_run(name, step_config, store, run)
            section = method_report(name, step_config, results[name], store, level=2, prefix=f"{name}-")
            sections.append(section)
    markdown = "# asymptote: main job report\n\n" + "\n\n".join(s.markdown for s in sections)
    files = {n: b for s in sections for n, b in s.files.items()}
    report = publish_report(store, "main", stable_hash(key_dict(config)), markdown, files)
    figures = {name: s.figures for name, s in zip(config.steps, sections, strict=True)}
    return MainResult(flow_run_id=flow_run.id, report_uri=report, store_uri=store.uri(), figures=figures)
