"""Recipes: named YAML configs (asymptote/recipes/*.yaml) or any YAML path, plus `a.b=value` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from asymptote.config import ConfigError, build

RECIPE_DIR = Path(__file__).parent / "recipes"
T = TypeVar("T", bound=BaseModel)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | None) -> dict[str, Any]:
    if not name_or_path:
        return {}
    path = Path(name_or_path)
    if not path.exists():
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(
            f"recipe {name_or_path!r} not found: give a YAML path or one of {', '.join(recipe_names())}"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise ConfigError(f"recipe {path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"recipe {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of config sections")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Set a dotted path: 'train.lr=3e-3' (the value is parsed as YAML: numbers, lists, null...)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.field=value, e.g. train.lr=3e-3")
    path, raw = assignment.split("=", 1)
    node = data
    *parents, leaf = path.strip().split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(raw)
    return data


def resolve(
    cls: type[T], recipe: str | None = None, overrides: list[str] = (), base: dict | None = None
) -> T:
    """Recipe (or base dict) + overrides, validated into cls with errors that name the field and the fix."""
    data = copy.deepcopy(base) if base is not None else load_recipe(recipe)
    for assignment in overrides:
        apply_override(data, assignment)
    return build(cls, data)


def recipe_description(name: str) -> str:
    """A bundled recipe's one-line description: the first line of its header comment."""
    first = (RECIPE_DIR / f"{name}.yaml").read_text().splitlines()[:1]
    return first[0].lstrip("#").strip() if first and first[0].startswith("#") else "(no description)"
