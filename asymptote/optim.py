"""AdamW with decoupled weight decay on matrices only.

Norm gains, embeddings and biases are never decayed: decaying an embedding shrinks rare tokens
towards zero, and the paper's heavy weight decay (~30x the usual) would magnify that harm.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from asymptote.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (no_decay if p.dim() < 2 or isinstance(module, nn.Embedding) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    fused = device.type == "cuda"  # the fused kernel is CUDA-only
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
