"""The code version in every cache key: the package version + a hash of every project module a step runs.

A step names its entry modules (where the functions that compute its result live); the modules they
import, transitively and counting imports inside functions, are read from the source with `ast`. So
no list is kept by hand: editing a module a step runs changes its key and re-runs it, editing one it
never reaches (a report, the CLI, another method) does not. Registries that name code by string
("module:function", e.g. a training job's objective) are not imports; the caller adds the module it
chose as another entry (see `asymptote.job.job_code_version`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asymptote
from asymptote.config import stable_hash
from asymptote.store import cache_dir

# The packages of this project (pyproject's package-dir maps the last four to top-level folders).
CORE_PACKAGES = ("asymptote", "asymptote.reports")
ORCHESTRATION_PACKAGES = ("asymptote.flows", "asymptote.tasks", "asymptote.tuning", "asymptote.infra")
PACKAGES = CORE_PACKAGES + ORCHESTRATION_PACKAGES

# CPython 3.11 before 3.11.8 corrupts ast.parse's recursion count when two threads build ASTs at once
# ("SystemError: AST constructor recursion depth mismatch", gh-106905): Prefect runs tasks in threads,
# and the fault matrix met it in a cache key. One parse at a time here, and a parse that another
# library's concurrent one (outside this lock) upset is tried again: the error is transient.
_PARSING = threading.Lock()
_PARSE_TRIES = 5


def _parse(source: str, filename: str) -> ast.Module:
    for attempt in range(_PARSE_TRIES):
        try:
            with _PARSING:
                return ast.parse(source, filename)
        except SystemError as err:  # only gh-106905's message; anything else is real
            if "recursion depth mismatch" not in str(err) or attempt == _PARSE_TRIES - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, eq=False)  # hashed by identity: code versions are memoised per index
class ModuleIndex:
    """Every project module's source file, by dotted name."""

    files: dict[str, Path]
    _imports: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    """Memo of `imports`: a process keys many steps, and parsing is most of what a cached call spends here."""

    @classmethod
    def from_roots(cls, roots: dict[str, Path]) -> "ModuleIndex":
        """Index the packages found in the given folders (package name -> folder)."""
        files: dict[str, Path] = {}
        for package, folder in roots.items():
            for f in sorted(Path(folder).glob("*.py")):  # the packages are flat
                files[package if f.stem == "__init__" else f"{package}.{f.stem}"] = f
        return cls(files)

    @classmethod
    def installed(cls) -> "ModuleIndex":
        """The index of the code this process imports (find_spec executes no subpackage)."""
        roots = {}
        for package in PACKAGES:
            spec = importlib.util.find_spec(package)
            roots[package] = Path(spec.submodule_search_locations[0])
        return cls.from_roots(roots)

    def resolve(self, name: str) -> str | None:
        """The project module a dotted import target belongs to (a.b.func -> a.b), if any."""
        while name and name not in self.files:
            name = name.rpartition(".")[0]
        return name or None

    def imports(self, module: str) -> frozenset[str]:
        """Project modules that `module` imports anywhere in its source."""
        if module not in self._imports:
            self._imports[module] = self._parse_imports(module)
        return self._imports[module]

    def _parse_imports(self, module: str) -> frozenset[str]:
        found: set[str] = set()
        for target in _import_targets(module, self.files[module]):
            resolved = self.resolve(target)
            if resolved and resolved != module:
                found.add(resolved)
        return frozenset(found)

    def closure(self, *entries: str) -> list[str]:
        """The entries and every project module they reach, sorted."""
        unknown = [e for e in entries if e not in self.files]
        if unknown:
            raise ValueError(f"code version: {unknown} are not modules of this project")
        seen, todo = set(entries), list(entries)
        while todo:
            for dep in self.imports(todo.pop()) - seen:
                seen.add(dep)
                todo.append(dep)
        return sorted(seen)


def _import_targets(module: str, path: Path) -> list[str]:
    """Every dotted name `module` imports, read from its source: parsed once per source text per
    machine (walking the syntax trees of every module was most of a fully cached call's own time)."""
    source = path.read_bytes()
    is_package = path.name == "__init__.py"
    digest = hashlib.sha256(f"{module}\0{int(is_package)}\0".encode() + source).hexdigest()
    with _MEMO:  # Prefect runs steps in threads: one reader or writer of the memo at a time
        memo = _parsed_memo()
        if digest not in memo:
            tree = _parse(source.decode(), str(path))
            memo[digest] = sorted({t for node in ast.walk(tree) for t in _targets(node, module, is_package)})
            _save_parsed_memo(memo)
        return memo[digest]


_MEMO = threading.Lock()


@functools.cache
def _parsed_memo() -> dict[str, list[str]]:
    try:
        return json.loads(_parsed_memo_path().read_text())
    except (OSError, ValueError):  # none yet, or unreadable: parse again
        return {}


def _save_parsed_memo(memo: dict[str, list[str]]) -> None:
    """Written whole and renamed into place: concurrent writers each leave a complete file."""
    path = _parsed_memo_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next process a parse
        tmp.unlink(missing_ok=True)


def _parsed_memo_path() -> Path:
    return cache_dir() / "module-imports.json"


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative import: resolve against this module's package
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" for a in node.names]  # resolve() trims names that are not modules


@functools.cache
def _installed() -> ModuleIndex:
    return ModuleIndex.installed()


def code_version(*entries: str, index: ModuleIndex | None = None) -> str:
    """Package version + hash of the entry modules' import closure."""
    return _code_version(tuple(sorted(set(entries))), index or _installed())


@functools.lru_cache(maxsize=256)
def _code_version(entries: tuple[str, ...], index: ModuleIndex) -> str:
    h = hashlib.sha256()
    for name in index.closure(*entries):
        h.update(name.encode() + b"\0" + index.files[name].read_bytes())
    return f"{asymptote.__version__}+{h.hexdigest()[:10]}"


def step_key(entries: str | tuple[str, ...], index: ModuleIndex | None = None, **parts: Any) -> str:
    """The cache key of a step: what it reads (configs without volatile fields, input artifacts' paths
    or digests) + the code version of the modules it runs. Every cached step builds its key here."""
    entries = (entries,) if isinstance(entries, str) else entries
    return stable_hash({**parts, "code": code_version(*entries, index=index)})
