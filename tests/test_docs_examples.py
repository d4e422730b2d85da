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


def _api_table() -> dict[str, list[str]]:
    """docs/api.md's flow table: flow name -> its cells (backticks stripped)."""
    rows = re.findall(r"^\| `(\w+)` \|(.*)\|$", (ROOT / "docs" / "api.md").read_text(), re.M)
    return {name: [c.strip().replace("`", "") for c in cells.split("|")] for name, cells in rows}


def test_api_table_is_the_registry():
    """Each row of docs/api.md's table says what the registry says: the flow, its config and result
    types, its CLI command and the recipe its deployment runs; and the table has no other row."""
    table = _api_table()
    assert set(table) == set(methods.flows())
    commands = {m.flow.split(":")[1]: f"asymptote {m.name}" for m in methods.METHODS.values()}
    commands[methods.MAIN["flow"].split(":")[1]] = "asymptote run"
    for name, entry in methods.flows().items():
        config, result, cli, recipes = table[name][:4]
        assert config == entry["config"].split(":")[1] and result == entry["result"].split(":")[1], name
        assert cli == commands[name] and entry["recipe"] in recipes.split(", "), name


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    for name in [*methods.METHODS, "run"]:
        assert re.search(rf"^asymptote {name}\b", readme, re.M), (
            f"README's command list lacks `asymptote {name}`"
        )


@pytest.mark.slow
@pytest.mark.parametrize("doc", WITH_EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_run(doc, ray_local, prefect_api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' temp stores land in the test folder
    monkeypatch.setenv("ASYMPTOTE_STORE", str(tmp_path / "store"))
    namespace: dict = {"__name__": f"example_{doc.stem}"}
    for line, code in python_blocks(doc.read_text()):
        exec(compile(code, f"{doc.relative_to(ROOT)}:{line}", "exec"), namespace)  # noqa: S102
