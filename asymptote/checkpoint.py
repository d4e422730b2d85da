"""Checkpoint files: weights as safetensors, everything else as a weights_only torch file.

A checkpoint folder holds `model.safetensors` (the unwrapped model's tensors, loadable by any
safetensors reader) and `state.pt` (optimizer, step, data position, RNG, metrics so far), which is
read with `torch.load(weights_only=True)` so that loading never executes pickled code.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
STATE = "state.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside torch.compile's wrapper (._orig_mod) and DistributedDataParallel (.module).

    Weights are saved and evaluated through the bare model, so checkpoints keep the same keys whether
    or not the run was compiled or distributed.
    """
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    save_tensors(unwrap(model).state_dict(), path, metadata)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None):
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)


def host_copy(state: Any) -> Any:
    """A copy of a state tree whose tensors are new host tensors: a background writer can serialise it
    while training updates the originals in place (on CPU, `.cpu()` alone would return the originals)."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: host_copy(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(host_copy(v) for v in state)
    return copy.deepcopy(state)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    torch.save(state, str(path))


def load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=True)
