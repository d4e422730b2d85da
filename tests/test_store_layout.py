"""Store paths are spelled in one place (asymptote.store.LAYOUT), and docs/store.md lists the same folders."""

from __future__ import annotations

import re
from pathlib import Path

from asymptote.store import LAYOUT, layout

DOC = (Path(__file__).resolve().parents[1] / "docs" / "store.md").read_text()


def test_docs_list_every_artifact_folder():
    documented = set(re.findall(r"^([a-z]+)/", DOC, flags=re.M))
    folders = {template.split("/")[0] for template in LAYOUT.values()}
    assert folders <= documented, f"docs/store.md does not list {sorted(folders - documented)}"


def test_layout_fills_its_templates():
    assert layout("run", key="abc") == "runs/abc"
    assert layout("report", flow="main", key="k") == "reports/main/k"
    assert layout("checkpoints", key="abc").startswith(layout("run", key="abc") + "/")
