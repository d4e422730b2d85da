"""The main job: one corpus, one store, a recipe of method steps, one report at the end.

`asymptote run` (and `make demo`) calls this with the `main` recipe. The steps are methods of the
registry (flows/registry.py). For each step, in order:
1. its config is its section of the recipe, with the shared data, store and compute filled in;
2. it takes what it consumes from the steps before it (its registry entry's `inputs`);
3. its flow runs as a subflow, unless its stored result still holds (flows/stage_memo.py);
4. its report becomes a section of the main report.
Every training run inside is cached, so running the job again reuses everything it already made.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import preflight, report_check
from asymptote.config import key_dict, load, stable_hash
from asymptote.flows.registry import METHODS, MainConfig
from asymptote.flows.reporting import method_report, publish_report
from asymptote.flows.stage_memo import reuse_or_run
from asymptote.infra.cluster import compute_session
from asymptote.reports import Report
from asymptote.store import Store


class MainResult(BaseModel):
    flow_run_id: str | None
    report_uri: str
    store_uri: str
    figures: dict[str, dict[str, Any]]
    """Headline figures per step."""
    summaries: dict[str, str] = {}
    """Each step's headline for the terminal (its method's `summary`)."""


@flow(name="main", log_prints=True)
def main_job(config: MainConfig | None = None) -> MainResult:
    """Run every step of the recipe and publish one report naming where results and plots are."""
    config = config or MainConfig()
    with preflight.one_check_per_call():  # the steps' subflows reuse this check of their configs
        preflight.check(config)  # every step's data, store and model references, before any step
        store = Store(config.store)
        with compute_session(config.compute.ray_address):
            results, sections = run_steps(config, store)
    markdown = "# asymptote: main job report\n\n" + "\n\n".join(s.markdown for s in sections)
    files = {n: b for s in sections for n, b in s.files.items()}
    report = publish_report(store, "main", stable_hash(key_dict(config)), markdown, files)
    figures = {name: s.figures for name, s in zip(config.steps, sections, strict=True)}
    for problem in report_check.check_report(markdown, files) + report_check.check(figures):
        print(f"WARNING: the report contradicts itself: {problem}")  # asymptote.report_check
    summaries = {name: load(METHODS[name].summary)(result)[1] for name, result in results.items()}
    return MainResult(
        flow_run_id=flow_run.id,
        report_uri=report,
        store_uri=store.uri(),
        figures=figures,
        summaries=summaries,
    )


def run_steps(config: MainConfig, store: Store) -> tuple[dict[str, BaseModel], list[Report]]:
    """Each step in order, fed what it consumes from the steps before it: its result and report section."""
    results: dict[str, BaseModel] = {}
    sections = []
    for name in config.steps:
        method = METHODS[name]
        step = config.step_config(name)
        if method.inputs:
            step = load(method.inputs)(step, results)
        step_flow = load(method.flow)
        results[name] = reuse_or_run(name, step, store, lambda f=step_flow, c=step: f(c))
        sections.append(method_report(name, step, results[name], store, level=2, prefix=f"{name}-"))
    return results, sections
