"""Shared bits of the benchmark scripts: argument parsing, a bench store, the last JSON line.

With `--save`, the JSON line is also written to bench/results/<bench>-<corpus>.json with what it was
measured on: the commit, the date, the machine (cores, GPU if any) and the protocol hash (the bench
script's text and its options, so two results with the same hash followed the same procedure).
`bench/render_results.py` renders the README's results table from those files.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from asymptote.infra import settings
from asymptote.recipes import resolve

settings.apply()  # a benchmark script's session: Prefect and Ray settings before either loads

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = Path(__file__).parent / "protocols"
# Options that say where, not how: left out of the protocol hash.
PLACE_OPTIONS = ("--store", "--save", "--data", "--json-out", "--corpus", "--out")


def parser(description: str, protocol: str | None = None) -> argparse.ArgumentParser:
    """The common options; with `protocol`, also `--protocol` (default bench/protocols/<protocol>.json)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="text file, folder or URI to train on")
    p.add_argument("--store", default=None, help="artifact store (default: a fresh temporary folder)")
    p.add_argument("--save", action="store_true", help="also write the result to bench/results/")
    if protocol:
        p.add_argument(
            "--protocol",
            default=str(PROTOCOLS / f"{protocol}.json"),
            help="the protocol file: grids, seeds, budgets and analysis, fixed before the run",
        )
        p.add_argument(
            "--seed-offset", type=int, default=0, help="added to every training seed (bench/replicate.py)"
        )
    return p


class Protocol(dict):
    """A bench's protocol: the JSON file's fields, its content hash (`sha`) and where it was read."""

    sha: str = ""
    path: str = ""
    commit: str = ""


def load_protocol(path: str) -> Protocol:
    """Read a protocol file; its hash is of the bytes, so any edit to it is a different protocol."""
    blob = Path(path).read_bytes()
    out = Protocol(json.loads(blob))
    out.sha = hashlib.sha256(blob).hexdigest()[:16]
    out.path = str(path)
    out.commit = _commit()  # the code as it was when the run started (the tree may move during it)
    print(f"protocol {out.path} sha256:{out.sha} at commit {out.commit}", file=sys.stderr, flush=True)
    return out


def study_config(cls, study: dict, data: str, store: str, sets: list[str] = ()):
    """A protocol's flow config (`study`, without data source or store) on `data`, in `store`, with
    `--set` overrides applied; errors name the field as a recipe's do."""
    base = study | {"data": study.get("data", {}) | {"source": data}, "store": {"uri": store}}
    return resolve(cls, None, list(sets), base=base)


def protocol_fields(protocol: Protocol, seed_offset: int = 0) -> dict:
    """What a result carries about its protocol: the file's hash, the commit, and any seed offset."""
    return {
        "protocol": protocol.sha,
        "protocol_file": Path(protocol.path).name,
        "commit": protocol.commit,
    } | ({"seed_offset": seed_offset} if seed_offset else {})


def store_uri(arg: str | None) -> str:
    return arg or tempfile.mkdtemp(prefix="asymptote-bench-")


def emit(result: dict, save: bool = False, data: str | None = None, tag: str = "") -> None:
    """The benchmark's figures: one JSON line, printed last; with `save`, also its result file (`tag`
    tells apart runs of one bench on one corpus that measure different things, e.g. two fractions)."""
    sys.stdout.flush()
    print(json.dumps(result, default=_plain), flush=True)
    if save:
        path = save_result(result, data, tag=tag)
        print(f"saved {path}", file=sys.stderr, flush=True)


def _plain(value):
    """JSON for what json cannot write: numbers (numpy's too) as floats, anything else as its text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def corpus_name(data: str | None) -> str:
    """A corpus' short name: the file or folder stem (`builtin:python-docs` -> python-docs)."""
    if not data:
        return "none"
    return Path(data.split(":", 1)[1] if data.startswith("builtin:") else data.rstrip("/")).stem


def save_result(result: dict, data: str | None, argv: list[str] | None = None, tag: str = "") -> Path:
    """Write bench/results/<bench>-<corpus>[-<tag>].json: the result and where and how it was measured."""
    argv = list(sys.argv if argv is None else argv)
    bench = Path(argv[0]).stem
    record = {
        "bench": bench,
        "corpus": corpus_name(data),
        "commit": result.get("commit") or _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "protocol": result.get("protocol") or protocol_hash(Path(argv[0]), argv[1:]),
        "command": " ".join([f"python bench/{bench}.py", *argv[1:]]),
        "result": json.loads(json.dumps(result, default=_plain)),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{bench}-{record['corpus']}{'-' + tag if tag else ''}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def protocol_hash(script: Path, options: list[str]) -> str:
    """The bench script's text and its options other than where it reads and writes."""
    kept, skip = [], False
    for opt in options:
        if skip:
            skip = False
            continue
        name = opt.split("=", 1)[0]
        if name in PLACE_OPTIONS:
            skip = "=" not in opt and name != "--save"
            continue
        kept.append(opt)
    blob = script.read_bytes() + b"\0" + "\0".join(kept).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def machine() -> dict:
    """Cores, the load, the platform, and the GPU if `nvidia-smi` sees one (without importing torch)."""
    gpu = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        gpu = f"{len(names)}x {names[0]}" if names else None
    load = round(os.getloadavg()[0], 1)  # other work on the machine slows a timing down
    return {"cores": os.cpu_count(), "load_1min": load, "platform": platform.platform(terse=True), "gpu": gpu}


def _commit() -> str:
    """The commit the bench ran at, with `-dirty` when the tree had uncommitted changes."""
    root = Path(__file__).parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
