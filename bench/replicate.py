"""Replication: rerun a bench with fresh seeds into a fresh store; does the first run's interval cover it?

    python bench/replicate.py distill --data ../shared/data/tinyshakespeare.txt
    python bench/replicate.py soups --data PATH --first first.json --seed-offset 1000

The first run is the bench's JSON line read from `--first` (a file holding it, e.g. bench/results/...,
or a saved stdout), or, without it, a run made here. The replicate runs the same bench with the same
protocol and `--seed-offset` added to every training seed, into a new temporary store, so nothing it
reports was computed by the first run. Every figure both lines carry as {estimate, ci} (found at any
depth; its path names it) is compared: `covered` when the first run's interval holds the replicate's
estimate. Progress on stderr; one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from common import emit

BENCH = Path(__file__).parent


def figures(obj: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every {estimate, ci} in a result, with its path (`retained.sequence`, `grid`)."""
    if isinstance(obj, dict):
        if "estimate" in obj and isinstance(obj.get("ci"), list) and len(obj["ci"]) == 2:
            yield path, obj
        for key, value in obj.items():
            yield from figures(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from figures(value, f"{path}[{i}]")


def _json_values(text: str) -> Iterator[Any]:
    """The whole text as one JSON value (a saved bench/results file, indented) or, when it is not one,
    each line that parses, from the last (a bench's stdout)."""
    try:
        yield json.loads(text)
        return
    except ValueError:
        pass
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            yield json.loads(line)


def last_json(text: str) -> dict:
    """A bench's result: a saved result file's `result`, or the last JSON object line of its stdout."""
    for out in _json_values(text):
        if isinstance(out, dict):
            return out.get("result", out) if "bench" in out and "result" in out else out
    raise ValueError("no JSON object line found")


def run_bench(bench: str, data: str, extra: list[str], seed_offset: int) -> dict:
    cmd = [
        sys.executable,
        str(BENCH / f"{bench}.py"),
        "--data",
        data,
        "--seed-offset",
        str(seed_offset),
        *extra,
    ]
    print(f"running: {' '.join(cmd)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)  # stderr: the bench's log
    return last_json(done.stdout)


def coverage(first: dict, second: dict) -> dict[str, Any]:
    """Per figure both results carry: the first's interval, the replicate's estimate, covered or not."""
    theirs = dict(figures(second))
    rows: dict[str, dict] = {}
    for path, fig in figures(first):
        other = theirs.get(path)
        if other is None or fig["estimate"] is None or other["estimate"] is None or None in fig["ci"]:
            continue
        lo, hi = fig["ci"]
        rows[path] = {
            "first": fig["estimate"],
            "first_ci": [lo, hi],
            "replicate": other["estimate"],
            "replicate_ci": other["ci"],
            "covered": bool(lo <= other["estimate"] <= hi),
        }
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", help="bench name under bench/ (distill, soups, autolrs, ...)")
    p.add_argument("--data", required=True, help="corpus, as the bench takes it")
    p.add_argument("--first", default=None, help="file whose last JSON line is the first run's result")
    p.add_argument("--seed-offset", type=int, default=1000, help="added to every seed of the replicate")
    args, extra = p.parse_known_args()  # anything else goes to the bench (e.g. --protocol FILE)
    if "--store" in extra:
        p.error("--store: the replicate always uses a fresh store (drop the option)")
    started = time.time()
    if args.first:
        first = last_json(Path(args.first).read_text())
    else:
        first = run_bench(args.bench, args.data, extra, 0)
    if first.get("protocol") is None:
        p.error(f"the first result carries no protocol hash: is {args.bench} a protocol bench?")
    second = run_bench(args.bench, args.data, extra, args.seed_offset)
    if second.get("protocol") != first.get("protocol"):
        sys.exit(
            f"protocol differs: first {first.get('protocol')}, replicate {second.get('protocol')}; "
            "pass the same --protocol file the first run used"
        )
    rows = coverage(first, second)
    for path, row in rows.items():
        mark = "covered" if row["covered"] else "NOT covered"
        print(
            f"{path}: first {row['first']:.4f} [{row['first_ci'][0]:.4f}, {row['first_ci'][1]:.4f}], "
            f"replicate {row['replicate']:.4f}: {mark}",
            file=sys.stderr,
        )
    emit(
        {
            "bench": args.bench,
            "data": args.data,
            "protocol": first["protocol"],
            "seed_offset": args.seed_offset,
            "figures": rows,
            "covered": sum(r["covered"] for r in rows.values()),
            "total": len(rows),
            "all_covered": all(r["covered"] for r in rows.values()) and bool(rows),
            "wall_s": round(time.time() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
