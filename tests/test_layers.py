"""The import graph: no cycle anywhere (imports inside functions count) and no upward import from the core."""

from __future__ import annotations

import ast

from asymptote.versioning import ORCHESTRATION_PACKAGES, ModuleIndex

INDEX = ModuleIndex.installed()
UPPER = ORCHESTRATION_PACKAGES  # flows, tasks, tuning, infra
ORCHESTRATORS = ("prefect", "ray")


def _is_core(module: str) -> bool:
    return not any(module == p or module.startswith(p + ".") for p in UPPER) and not module.endswith(".cli")


def _cycle_from(start: str) -> list[str] | None:
    path, on_path, done = [], set(), set()

    def visit(m: str) -> list[str] | None:
        path.append(m)
        on_path.add(m)
        for dep in sorted(INDEX.imports(m)):
            if dep in on_path:
                return path[path.index(dep) :] + [dep]
            if dep not in done and (found := visit(dep)):
                return found
        on_path.discard(m)
        done.add(m)
        path.pop()
        return None

    return visit(start)


def test_no_import_cycles():
    cycles = [c for m in sorted(INDEX.files) if (c := _cycle_from(m))]
    assert not cycles, f"import cycles: {cycles[0]}"


def _external_roots(module: str) -> set[str]:
    tree = ast.parse(INDEX.files[module].read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_nothing_above_it():
    leaks = []
    for m in filter(_is_core, INDEX.files):
        leaks += [f"{m} -> {d}" for d in INDEX.imports(m) if not _is_core(d)]
        leaks += [f"{m} -> {x}" for x in _external_roots(m) & set(ORCHESTRATORS)]
    assert not leaks, f"the pure core imports orchestration: {leaks}"
