"""What the CLI says about itself: each command's default scale, and `asymptote config explain`.

A command given no `-r` builds its config from the config classes' own defaults. `DEFAULTS` says, per
command, what that runs and which bundled recipe spells the same settings out (tests/test_cli.py checks
that the recipe and the defaults agree), so each command's help can name its default truthfully.
`explain` prints the field docstrings of one config section, as the configs declare them
(`use_attribute_docstrings`), the way litgpt turns its dataclass docs into help.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class Default:
    scale: str
    """What a command given no recipe runs, in one phrase."""
    same_as: str | None = None
    """The bundled recipe whose training settings equal the defaults (None: no recipe does)."""


DEFAULTS: dict[str, Default] = {
    "run": Default(
        "pretrain, recipe and autolrs at tiny scale on the bundled Python docs; minutes on 2 CPU cores"
    ),
    "pretrain": Default("the `baby` preset (0.82M parameters) for one epoch of the bundled Python docs"),
    "scaling": Default(
        "3 sizes up to cpu-0.1m, a 20K-token budget, K=2 members; the main job's scaling step"
    ),
    "distill": Default("students of cpu-0.1m distilled from 2 members at a 20K-token budget", "distill-demo"),
    "soups": Default("soups of 4 short fine-tunes of a 200-step cpu-0.1m base; about a minute", "soups-tiny"),
    "autolrs": Default("300 steps of cpu-0.1m, k=10 trials per stage; about 2 minutes", "autolrs-tiny"),
    "recipe": Default(
        "the tiny chain: scaling, distillation, soups, final model; the main job's step", "recipe-tiny"
    ),
    "autolrs-search": Default(
        "4 Optuna trials, each an autolrs run with its defaults (k=10 trials per stage)"
    ),
}
"""Per command: its scale without `-r`; in "minutes" on 2 CPU cores from an empty store."""

BOOKKEEPING = {"name", "log_every", "checkpoint_every"}
"""Fields that name or log a run without changing what it learns (ignored when defaults and a recipe
are compared)."""


def default_help(command: str, deployed: str | None = None) -> str:
    """The help paragraph naming what the command runs without `-r` (and the recipe it deploys)."""
    d = DEFAULTS[command]
    same = f" (= recipe `{d.same_as}`)" if d.same_as else ""
    text = f"Without -r: {d.scale}{same}."
    return text + (f" Deployed with recipe `{deployed}`." if deployed else "")


def _section_class(annotation) -> type[BaseModel] | None:
    """The config class a field holds (directly, optionally, or as a list of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_class(arg)
        if found is not None:
            return found
    return None


def sections(roots: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    """Every config section by name: the roots (a method's whole config) and, breadth first, each
    nested section under its field name (`train`, `model`, `data`, ..., `scaling.search` for both)."""
    found: dict[str, type[BaseModel]] = {}
    queue = list(roots.items())
    while queue:
        name, cls = queue.pop(0)
        if name in found:
            continue
        found[name] = cls
        for field, info in cls.model_fields.items():
            sub = _section_class(info.annotation)
            if sub is not None:
                queue += [(field, sub), (f"{name}.{field}", sub)]
    return found


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return text or str(annotation).replace("typing.", "")


def explain(cls: type[BaseModel]) -> list[str]:
    """One entry per field: `name: type = default`, then its docstring, indented."""
    lines = [(cls.__doc__ or cls.__name__).strip().splitlines()[0], ""]
    for name, info in cls.model_fields.items():
        default = "(a section)" if _section_class(info.annotation) else _default(info)
        lines.append(f"{name}: {_type_name(info.annotation)} = {default}")
        for doc_line in (info.description or "(undocumented)").splitlines():
            lines.append(f"    {doc_line.strip()}")
    return lines


def _default(info) -> str:
    if info.default_factory is not None:
        return "(computed)"
    return "(required)" if info.is_required() else repr(info.default)
