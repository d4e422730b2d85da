"""Reports: a markdown file (plus its PNGs) committed to the store and published as a Prefect artifact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from asymptote.config import key_dict, load
from asymptote.flows.registry import METHODS
from asymptote.reports import Report, md_table, shift_headings  # noqa: F401  (re-exported until callers move)
from asymptote.store import Store, layout
from asymptote.versioning import step_key

# A result's fields that change from call to call without changing what its report shows.
VOLATILE_RESULT_FIELDS = {"flow_run_id", "step_states", "report_uri"}


def method_report(method: str, config, result, store: Store, level: int = 1, prefix: str = "") -> Report:
    """A method's report (its registry entry's `report` renderer) for a result, drawn once per result,
    heading level, prefix and renderer code, then read back from the store: plots take seconds each,
    and a call whose every step is cached must not redraw them.

    The result holds the keys of every artifact a report reads, so it stands for them in the key."""
    renderer = METHODS[method].report
    module = renderer.split(":")[0]
    body = result.model_dump(mode="json", exclude=VOLATILE_RESULT_FIELDS)
    key = step_key(module, config=key_dict(config), result=body, level=level, prefix=prefix)
    rel = layout("section", flow=method, key=key)
    if store.has(rel):
        files = {n: store.read(rel, n) for n in store.manifest(rel).files if n not in SECTION_FILES}
        figures = store.read_json(rel, "figures.json")
        return Report(store.read(rel, "report.md").decode(), files, figures)
    report = load(renderer)(config, result, store, level=level, prefix=prefix)
    figures = json.dumps(report.figures, default=str)
    files = {n: d if isinstance(d, bytes) else Path(d).read_bytes() for n, d in report.files.items()}
    with store.writer(rel, kind="report-section", meta={"flow": method}) as folder:
        (folder / "report.md").write_text(report.markdown)
        (folder / "figures.json").write_text(figures)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return Report(report.markdown, files, json.loads(figures))  # as a later call reads it back


SECTION_FILES = ("report.md", "figures.json")


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
