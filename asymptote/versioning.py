"""The code version that goes into every cache key: package version + hash of result-bearing sources.

Only modules that can change a trained model or a metric are hashed, so editing the CLI or a report
template never invalidates a cache; editing the model or the training step always does.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import asymptote

RESULT_MODULES = [
    "model.py", "data.py", "shards.py", "trainer.py", "optim.py", "schedules.py", "checkpoint.py",
    "job.py", "dist.py", "evaluation.py", "distill.py", "sampling.py", "soups.py", "merges.py",
    "weight_matching.py", "ensemble.py", "forecast.py",
]


@functools.cache
def code_version() -> str:
    root = Path(asymptote.__file__).parent
    h = hashlib.sha256()
    for name in RESULT_MODULES:
        f = root / name
        if f.exists():
            h.update(name.encode() + b"\0" + f.read_bytes())
    return f"{asymptote.__version__}+{h.hexdigest()[:10]}"
