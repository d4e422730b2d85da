"""Reports: a markdown file (plus its PNGs) committed to the store and published as a Prefect artifact."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from asymptote.config import load
from asymptote.flows.registry import METHODS
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
            description=f"{flow} report ({store.uri(rel)})",
        )
    return store.uri(rel, "report.md")


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
