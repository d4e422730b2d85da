"""The code version that goes into every cache key: package version + hash of result-bearing sources.

Only modules that can change a trained model or a metric are hashed, so editing the CLI or a report
template never invalidates a cache; editing the model or the training step always does. A training
run hashes the core modules plus the modules its objective, batches and driver come from
(`code_version_of`), so editing the soup maths does not invalidate a pre-training run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import asymptote

RESULT_MODULES = [
    "model.py",
    "data.py",
    "shards.py",
    "trainer.py",
    "optim.py",
    "schedules.py",
    "checkpoint.py",
    "job.py",
    "dist.py",
    "evaluation.py",
    "distill.py",
    "sampling.py",
    "soups.py",
    "merges.py",
    "weight_matching.py",
    "ensemble.py",
    "forecast.py",
]


# What every training run executes.
CORE_MODULES = [
    "asymptote.model",
    "asymptote.data",
    "asymptote.shards",
    "asymptote.trainer",
    "asymptote.optim",
    "asymptote.schedules",
    "asymptote.checkpoint",
    "asymptote.job",
    "asymptote.dist",
    "asymptote.evaluation",
]


def _source(module: str) -> bytes:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"code_version: no module {module!r}")
    return Path(spec.origin).read_bytes()


@functools.cache
def code_version_of(*modules: str) -> str:
    """Package version + hash of the core modules and the given dotted modules."""
    h = hashlib.sha256()
    for name in sorted(set(CORE_MODULES) | set(modules)):
        h.update(name.encode() + b"\0" + _source(name))
    return f"{asymptote.__version__}+{h.hexdigest()[:10]}"


@functools.cache
def code_version() -> str:
    """Hash of every result-bearing module (RESULT_MODULES under asymptote/): for non-training steps."""
    root = Path(asymptote.__file__).parent
    h = hashlib.sha256()
    for name in RESULT_MODULES:
        f = root / name
        if f.exists():
            h.update(name.encode() + b"\0" + f.read_bytes())
    return f"{asymptote.__version__}+{h.hexdigest()[:10]}"
