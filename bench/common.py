"""Shared bits of the benchmark scripts: argument parsing, a bench store, the last JSON line."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from asymptote.infra import settings

settings.apply()  # a benchmark script's session: Prefect and Ray settings before either loads


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="text file, folder or URI to train on")
    p.add_argument("--store", default=None, help="artifact store (default: a fresh temporary folder)")
    return p


def store_uri(arg: str | None) -> str:
    return arg or tempfile.mkdtemp(prefix="asymptote-bench-")


def emit(result: dict) -> None:
    """The benchmark's figures: one JSON line, printed last."""
    sys.stdout.flush()
    print(json.dumps(result, default=float), flush=True)
