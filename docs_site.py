"""MkDocs hooks (mkdocs.yml): README.md is the site's home page, its links made to work on the site.

README.md sits at the repository root, where its links read `docs/<page>.md` and
`bench/results/<file>.json`; on the site it is `index.md` inside docs/. The hooks add it as the
home page, rewrite its `docs/` links to the pages they name, and publish the result files it links, so
`mkdocs build --strict` checks every one of its links like any page's.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent
RESULTS = "bench/results"


def on_files(files: Files, config) -> Files:
    if files.get_file_from_path("index.md") is None:
        files.append(File.generated(config, "index.md", content=_readme_for_site()))
    for path in sorted((ROOT / RESULTS).glob("*.json")):
        files.append(File.generated(config, f"{RESULTS}/{path.name}", abs_src_path=str(path)))
    return files


def _readme_for_site() -> str:
    """README.md with its `docs/` links pointing at the pages beside it."""
    return re.sub(r"\]\(docs/", "](", (ROOT / "README.md").read_text())


def on_page_markdown(markdown: str, page, config, files) -> str:
    """```python skip (shown, not run by tests/test_docs_examples.py) renders as plain ```python."""
    return re.sub(r"^```python skip[ \t]*$", "```python", markdown, flags=re.M)
