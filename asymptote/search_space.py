"""The search space of the scaling study: the grid coordinate descent walks, its points and recipes.

Pure configuration (pydantic, no torch): configs and their errors load without the training stack.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence

from pydantic import Field, field_validator

from asymptote.config import ModelConfig, Section

AXES = ("epochs", "lr", "weight_decay")

Walk = Literal["neighbourhood", "lines"]
"""How a certified coordinate descent moves (asymptote.scaling.CoordinateDescent)."""
# Recipe name -> the axes its search tunes (the others stay at the start point's values).
RECIPES: dict[str, tuple[str, ...]] = {
    "standard": ("epochs", "lr"),
    "regularized": ("epochs", "lr", "weight_decay"),
}


def _increasing(name: str, values: list[float], positive: bool) -> list[float]:
    if not values:
        raise ValueError(f"{name} is empty; give at least one value")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"{name}={values} must be strictly increasing (neighbours are adjacent entries)")
    if values[0] < 0 or (positive and values[0] == 0):
        raise ValueError(f"{name}={values} must be {'> 0' if positive else '>= 0'}")
    return values


class SearchGrid(Section):
    """The values coordinate descent may visit; neighbours are adjacent entries. Defaults: the paper's grid."""

    lr: list[float] = Field(default_factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    """Peak learning rates, increasing."""
    weight_decay: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4])
    """AdamW weight decays, increasing."""
    epochs: list[float] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    """Passes over the token budget, increasing."""

    @field_validator("lr", "epochs")
    @classmethod
    def _positive(cls, v: list[float], info) -> list[float]:
        return _increasing(info.field_name, v, positive=True)

    @field_validator("weight_decay")
    @classmethod
    def _non_negative(cls, v: list[float], info) -> list[float]:
        return _increasing(info.field_name, v, positive=False)

    def size(self, axes: Sequence[str]) -> int:
        return math.prod(len(getattr(self, a)) for a in axes)


class Point(NamedTuple):
    """One setting of the searched hyper-parameters."""

    lr: float
    weight_decay: float
    epochs: float

    def label(self) -> str:
        return f"lr={self.lr:g} wd={self.weight_decay:g} ep={self.epochs:g}"


def on_grid(point: Point, grid: SearchGrid, axes: Iterable[str]) -> None:
    """Raise a ValueError naming the axis when a tuned coordinate is not a grid value."""
    for axis in axes:
        if getattr(point, axis) not in getattr(grid, axis):
            raise ValueError(
                f"start {axis}={getattr(point, axis)} is not on the grid {getattr(grid, axis)}; "
                f"pick one of those values or add it to grid.{axis}"
            )


def neighbours(point: Point, grid: SearchGrid, axes: Iterable[str]) -> list[Point]:
    """The one-step neighbours along the tuned axes that exist on the grid (edge-aware)."""
    out = []
    for axis in axes:
        values = getattr(grid, axis)
        i = values.index(getattr(point, axis))
        out += [point._replace(**{axis: values[j]}) for j in (i - 1, i + 1) if 0 <= j < len(values)]
    return out


def at_edges(values: Mapping[str, float], grid: Any, axes: Iterable[str]) -> list[str]:
    """The searched axes (more than one grid value) whose chosen value is the grid's first or last: a
    certified point there beat the neighbours the grid has, not a value past its end, so the grid may
    be too small (a bigger one can move the optimum). Works for any grid with list-valued axes."""
    out = []
    for axis in axes:
        choices = getattr(grid, axis)
        if len(choices) > 1 and values[axis] in (choices[0], choices[-1]):
            out.append(axis)
    return out


def size_label(model: ModelConfig) -> str:
    """A short name for a model shape: its preset, else its depth and width."""
    return model.preset or f"L{model.n_layer}-d{model.d_model}"
