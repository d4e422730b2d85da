"""Reports and results where a flow's users look: the store and the flow run's page in the Prefect UI.

Each flow commits its markdown report (with its PNGs) to the store and publishes, inside a Prefect
run, the markdown, its headline results as a table (`table(result)` of its report module), links to
its report and its store, and, for studies of many members, a progress bar updated as members finish.
Artifact keys are the method and a hash of its config (what can change a result), so every run of a
scheduled deployment adds a version to the same artifacts. Nothing published carries a secret: text
and rows pass through asymptote.redact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import get_run_context
from pydantic import BaseModel

from asymptote.config import key_dict, load, stable_hash
from asymptote.flows.registry import METHODS
from asymptote.redact import redact, redact_text
from asymptote.reports import Report
from asymptote.reports.sections import drawn_once
from asymptote.store import Store, layout


def method_report(method: str, config, result, store: Store, level: int = 1, prefix: str = "") -> Report:
    """A method's report section (its registry entry's `report`) for a result, drawn once per result."""
    return drawn_once(method, load(METHODS[method].report), config, result, store, level, prefix)


def publish_report(
    store: Store, flow: str, key: str, markdown: str, files: dict[str, bytes | str | Path] | None = None
) -> str:
    """Commit reports/<flow>/<key>/ (report.md + files) and attach the markdown to the flow run.

    Returns the URI of report.md. The Prefect artifact key must be lowercase letters, digits and dashes.
    """
    rel = layout("report", flow=flow, key=key)
    markdown = redact_text(markdown)  # a URL a user wrote with its credentials shows them as ***
    contents = {"report.md": markdown.encode()}
    contents |= {n: s if isinstance(s, bytes) else Path(s).read_bytes() for n, s in (files or {}).items()}
    if not _same_as_committed(store, rel, contents):  # a cached call leaves the committed report alone
        with store.writer(rel, kind="report", meta={"flow": flow}) as folder:
            for name, data in contents.items():
                (folder / name).write_bytes(data)
    if _in_prefect_run():
        create_markdown_artifact(
            markdown=markdown,
            key=f"{flow}-report".lower().replace("_", "-"),
            description=redact_text(f"{flow} report ({store.uri(rel)})"),
        )
    return store.uri(rel, "report.md")


def artifact_key(method: str, config: BaseModel) -> str:
    """`<method>-<hash of the config's result-changing fields>`: the same for every run of one config."""
    return f"{method}-{stable_hash(key_dict(config), 8)}".lower().replace("_", "-")


def publish_results(
    method: str, config: BaseModel, result: BaseModel, store: Store, report_uri: str | None
) -> None:
    """The flow run's table of headline results and its links to the report and to the store."""
    if not _in_prefect_run():
        return
    key = artifact_key(method, config)
    rows = redact(load(METHODS[method].table)(result))
    create_table_artifact(table=rows, key=f"{key}-results", description=f"{method}: headline results")
    links = {"report": report_uri, "store": store.uri()}
    for what, uri in ((w, u) for w, u in links.items() if u):
        link = redact_text(_as_link(uri))
        create_link_artifact(
            link=link, link_text=link, key=f"{key}-{what}", description=f"{method}: its {what}"
        )


class Progress:
    """A flow run's progress artifact: `progress(done, total)` as members finish (a no-op outside a run)."""

    def __init__(self, method: str, config: BaseModel, what: str = "members"):
        self.key, self.what, self.id = f"{artifact_key(method, config)}-progress", what, None

    def __call__(self, done: int, total: int) -> None:
        if not _in_prefect_run() or not total:
            return
        percent, line = 100.0 * done / total, f"{done}/{total} {self.what} finished"
        if self.id is None:
            self.id = create_progress_artifact(progress=percent, key=self.key, description=line)
        else:
            update_progress_artifact(artifact_id=self.id, progress=percent, description=line)

    def passed(self, step: str, steps: Sequence[str]) -> None:
        """For a flow whose steps are its progress: `step`, one of `steps`, is done."""
        self(steps.index(step) + 1, len(steps))


def _as_link(uri: str) -> str:
    """A store URI as a link: s3://... as it is, a local path as file://."""
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def _same_as_committed(store: Store, rel: str, contents: dict[str, bytes]) -> bool:
    if not store.has(rel):
        return False
    committed = {n: f["sha256"] for n, f in store.manifest(rel).files.items()}
    return committed == {n: hashlib.sha256(d).hexdigest() for n, d in contents.items()}


def _in_prefect_run() -> bool:
    try:
        get_run_context()
        return True
    except Exception:
        return False
