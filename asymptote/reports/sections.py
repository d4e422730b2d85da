"""A report section drawn once per result: plots take seconds each, and a call whose every step is
cached must not redraw them. Pure: the store and the code version, no Prefect or Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from asymptote.config import key_dict
from asymptote.reports import Report
from asymptote.store import Store, layout
from asymptote.versioning import step_key

# A result's fields that change from call to call without changing what its report shows.
VOLATILE_RESULT_FIELDS = {"flow_run_id", "step_states", "report_uri"}
SECTION_FILES = ("report.md", "figures.json")


def drawn_once(
    method: str,
    draw: Callable[..., Report],
    config: BaseModel,
    result: BaseModel,
    store: Store,
    level: int = 1,
    prefix: str = "",
) -> Report:
    """`draw(config, result, store, level=, prefix=)`, committed under sections/<method>/<key> and read
    back from there once drawn. The key holds the config, the result, the heading level and prefix and
    the code of the drawing module; the result holds the keys of every artifact a report reads, so it
    stands for them."""
    body = result.model_dump(mode="json", exclude=VOLATILE_RESULT_FIELDS)
    key = step_key(draw.__module__, config=key_dict(config), result=body, level=level, prefix=prefix)
    rel = layout("section", flow=method, key=key)
    if store.has(rel):
        files = {n: store.read(rel, n) for n in store.manifest(rel).files if n not in SECTION_FILES}
        return Report(store.read(rel, "report.md").decode(), files, store.read_json(rel, "figures.json"))
    report = draw(config, result, store, level=level, prefix=prefix)
    figures = json.dumps(report.figures, default=str)
    files = {n: d if isinstance(d, bytes) else Path(d).read_bytes() for n, d in report.files.items()}
    with store.writer(rel, kind="report-section", meta={"flow": method}) as folder:
        (folder / "report.md").write_text(report.markdown)
        (folder / "figures.json").write_text(figures)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return Report(report.markdown, files, json.loads(figures))  # as a later call reads it back
