"""Cache keys cover every module a step runs (read from the import graph), and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from asymptote.config import DataConfig, ModelConfig, TrainConfig
from asymptote.job import make_job
from asymptote.versioning import PACKAGES, ModuleIndex, code_version

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "asymptote": "asymptote",
    "asymptote.flows": "flows",
    "asymptote.tasks": "tasks",
    "asymptote.tuning": "tuning",
    "asymptote.infra": "infra",
}  # pyproject's package-dir


@pytest.fixture
def copy(tmp_path) -> Path:
    for folder in FOLDERS.values():
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def index_of(root: Path) -> ModuleIndex:
    roots = {pkg: root / folder for pkg, folder in FOLDERS.items()}
    return ModuleIndex.from_roots(roots | {"asymptote.reports": root / "asymptote" / "reports"})


def touch(root: Path, rel: str) -> None:
    with open(root / rel, "a") as f:
        f.write("\n# an edit\n")


def job(driver: str):
    return dict(
        model=ModelConfig(preset="cpu-0.1m"),
        data=DataConfig(),
        train=TrainConfig(max_steps=10),
        data_artifact="data/x",
        driver={"kind": driver},
    )


def key_in(root: Path, driver: str) -> str:
    from asymptote.job import job_key

    return job_key(make_job(**job(driver)), index=index_of(root))


@pytest.mark.parametrize(
    ("driver", "runs", "never_runs"),
    [
        ("autolrs", "asymptote/autolrs.py", "asymptote/soups.py"),
        ("autolrs", "asymptote/forecast.py", "asymptote/merges.py"),
        ("schedule", "asymptote/model.py", "asymptote/soups.py"),
        ("schedule", "asymptote/trainer.py", "asymptote/autolrs.py"),
    ],
)
def test_editing_a_module_a_run_executes_changes_its_key(copy, driver, runs, never_runs):
    before = key_in(copy, driver)
    touch(copy, never_runs)
    assert key_in(copy, driver) == before, f"{never_runs} is not run by a {driver} job"
    touch(copy, runs)
    assert key_in(copy, driver) != before, f"{runs} is run by a {driver} job"


def test_imports_inside_functions_count(copy):
    index = index_of(copy)
    (copy / "asymptote" / "lazy_user.py").write_text("def f():\n    from asymptote import forecast\n")
    index = index_of(copy)
    assert "asymptote.forecast" in index.closure("asymptote.lazy_user")


def test_installed_index_matches_the_package_dir_mapping():
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == FOLDERS and set(PACKAGES) == set(setuptools["packages"])
    assert code_version("asymptote.job") == code_version("asymptote.job", index=index_of(ROOT))


def test_the_machine_wide_parse_memo_never_changes_a_closure(tmp_path, monkeypatch):
    """Imports parsed once per source text are kept in the cache folder; a closure read through the
    memo, without it, or past a corrupt memo file is the same."""
    from asymptote import versioning

    entries = ("asymptote.flows.main", "asymptote.job")
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(tmp_path))
    closures = []
    for memo_file in (None, "kept", "corrupt"):
        if memo_file == "corrupt":
            (tmp_path / "module-imports.json").write_text("{not json")
        versioning._parsed_memo.cache_clear()
        closures.append(ModuleIndex.installed().closure(*entries))
        json.loads((tmp_path / "module-imports.json").read_text())  # written whole, even over a corrupt one
    versioning._parsed_memo.cache_clear()
    assert closures[0] == closures[1] == closures[2]
    assert {"asymptote.flows.main", "asymptote.job", "asymptote.trainer", "asymptote.store"} <= set(
        closures[0]
    )
