"""The examples in README.md and docs/*.md are run here, so the documentation cannot rot.

Convention: a block fenced exactly as ```python runs; ```python skip is shown but not run (it needs a
server, a cluster or S3). A file's blocks run in order in one namespace, like a notebook, in this
process: on the session's real local Ray and real Prefect API, with temp files in the test's folder.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from asymptote.flows import registry as methods

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every runnable block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in RUNNABLE.finditer(text)]


def documents() -> list[Path]:
    return [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]


WITH_EXAMPLES = [p for p in documents() if python_blocks(p.read_text())]


def test_fence_convention():
    text = "```python\nrun = 1\n```\n```python skip\nshown = 1\n```\n```bash\nls\n```\n```python\nalso = 2\n```\n"
    assert python_blocks(text) == [(2, "run = 1\n"), (11, "also = 2\n")]


def test_docs_have_runnable_examples():
    names = {p.name for p in WITH_EXAMPLES}
    assert {"api.md", "tune.md"} <= names


def test_api_reference_names_every_flow_with_its_types():
    api = (ROOT / "docs" / "api.md").read_text()
    for name, entry in methods.flows().items():
        config, result = (entry[k].split(":")[1] for k in ("config", "result"))
        assert f"`{name}`" in api and f"`{config}`" in api and f"`{result}`" in api, name


@pytest.mark.slow
@pytest.mark.parametrize("doc", WITH_EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_run(doc, ray_local, prefect_api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' temp stores land in the test folder
    monkeypatch.setenv("ASYMPTOTE_STORE", str(tmp_path / "store"))
    namespace: dict = {"__name__": f"example_{doc.stem}"}
    for line, code in python_blocks(doc.read_text()):
        exec(compile(code, f"{doc.relative_to(ROOT)}:{line}", "exec"), namespace)  # noqa: S102
