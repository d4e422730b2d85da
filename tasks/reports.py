"""Reports: a markdown file (plus its PNGs) committed to the store and published as a Prefect artifact."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from asymptote.store import Store, layout


@dataclass
class Report:
    """A method's report: markdown whose images are `files` (name -> PNG bytes), and headline figures."""

    markdown: str
    files: dict[str, bytes] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def shift_headings(markdown: str, by: int) -> str:
    """Demote every heading by `by` levels (a method's report as a section of the main report)."""
    if by <= 0:
        return markdown
    out, fenced = [], False
    for line in markdown.split("\n"):
        fenced ^= line.startswith("```")
        out.append("#" * by + line if not fenced and re.match(r"#+ ", line) else line)
    return "\n".join(out)


def publish_report(
    store: Store, flow: str, key: str, markdown: str, files: dict[str, bytes | str | Path] | None = None
) -> str:
    """Commit reports/<flow>/<key>/ (report.md + files) and attach the markdown to the flow run.

    Returns the URI of report.md. The Prefect artifact key must be lowercase letters, digits and dashes.
    """
    rel = layout("report", flow=flow, key=key)
    with store.writer(rel, kind="report", meta={"flow": flow}) as folder:
        (folder / "report.md").write_text(markdown)
        for name, src in (files or {}).items():
            if isinstance(src, bytes):
                (folder / name).write_bytes(src)
            else:
                shutil.copyfile(src, folder / name)
    if _in_prefect_run():
        create_markdown_artifact(
            markdown=markdown,
            key=f"{flow}-report".lower().replace("_", "-"),
            description=f"{flow} report ({store.uri(rel)})",
        )
    return store.uri(rel, "report.md")


def _in_prefect_run() -> bool:
    try:
        get_run_context()
        return True
    except Exception:
        return False


def md_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A small markdown table; floats shown with 4 decimals."""
    if not rows:
        return "_(none)_"
    columns = columns or list(rows[0])

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
