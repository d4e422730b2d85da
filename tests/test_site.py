"""The docs build as a site with `mkdocs build --strict`: every page, link and anchor resolves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "--site-dir", str(site)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_the_site_builds_strict_with_every_page_and_the_api_reference(tmp_path):
    res = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert res.returncode == 0, res.stderr[-3000:]
    for page in sorted((ROOT / "docs").glob("*.md")):  # the nav follows the files: none is left out
        assert (tmp_path / "site" / page.stem / "index.html").exists(), page.name
    home = (tmp_path / "site" / "index.html").read_text()
    assert '<h2 id="results"' in home or 'id="results"' in home  # README.md is the home page
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "Peak learning rate." in reference and "asymptote.flows.registry" in reference
    for result in (ROOT / "bench" / "results").glob("*.json"):  # the README's links to result files
        assert (tmp_path / "site" / "bench" / "results" / result.name).exists()


@pytest.mark.parametrize(
    "broken", ["[gone](no-such-page.md)", "[gone](api.md#no-such-anchor)", "[gone](#no-such-heading)"]
)
def test_a_broken_link_or_anchor_fails_the_build(tmp_path, broken):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "broken.md").write_text(f"# Broken\n\nSee {broken}.\n")
    config = tmp_path / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    text = text.replace("  - docs_site.py", f"  - {ROOT / 'docs_site.py'}")
    config.write_text(text.split("plugins:")[0] + "plugins:\n  - search\n")  # no API pages: fast
    (docs / "reference.md").unlink()
    res = _build(config, tmp_path / "site")
    assert res.returncode != 0 and "broken.md" in res.stderr, res.stderr[-3000:]
