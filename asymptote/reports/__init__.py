"""Report rendering: markdown sections and their plots, one module per method. Pure: no Prefect or Ray.

A method's `report(config, result, store, level=1, prefix="") -> Report` lives in
`asymptote.reports.<method>`; publishing a report to the store and the Prefect UI is the flows' job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


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
