"""Small builders shared by tests."""

from __future__ import annotations


def tiny_pretrain_config(store_uri: str, source: str = "builtin:python-docs", **train):
    """A pretrain config that trains in a couple of seconds on one CPU."""
    from asymptote.config import PretrainConfig

    train = {
        "max_steps": 30,
        "batch_size": 8,
        "warmup_steps": 5,
        "eval_every": 15,
        "log_every": 5,
        "checkpoint_every": 10,
        "eval_windows": 32,
        "lr": 3e-3,
    } | train
    return PretrainConfig.model_validate(
        {
            "name": "tiny",
            "model": {"preset": "cpu-0.1m"},
            "data": {"source": source, "max_train_tokens": 100_000},
            "train": train,
            "store": {"uri": store_uri},
        }
    )
