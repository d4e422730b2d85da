"""Start-up cost of the CLI, side by side with its references, in one run.

Times (wall seconds of fresh processes, the best of --repeat):
- help_s: `asymptote --help`;
- config_error_s: `asymptote pretrain` with a mistyped field (must exit 2 before anything runs);
- cached_call_s: `asymptote pretrain` whose every step is already in the store;
- torch_import_s: `python -c "import torch"`;
- bare_prefect_cached_s: a bare Prefect flow whose one cached task is already cached;
- main_second_run_s (with --main): `asymptote run` again over a store where the main job already ran.
Prints one JSON line last.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import emit, parser

BIN = Path(sys.executable).parent
TINY = ["--set", "model.preset=cpu-0.1m", "--set", "train.max_steps=20", "--set", "train.eval_every=20"]

BARE_PREFECT = textwrap.dedent(
    """
    import os, sys
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = sys.argv[1]
    from asymptote.infra import settings
    settings.apply()  # the same Prefect settings as the CLI (no telemetry, quiet logs)
    from prefect import flow, task
    from prefect.cache_policies import INPUTS

    @task(cache_policy=INPUTS, persist_result=True)
    def square(x: int) -> int:
        return x * x

    @flow
    def bare(x: int = 3) -> int:
        return square(x)

    print(bare())
    """
)


def timed(cmd: list[str], expect: int = 0, repeat: int = 1) -> float:
    """Best wall time of `repeat` runs of a fresh process; fails if it exits otherwise than `expect`."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        if proc.returncode != expect:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return round(best, 3)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--main", action="store_true", help="also time the main job's second run (slow first run)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asymptote-startup-"))
    cli = [str(BIN / "asymptote")]
    pretrain = [*cli, "pretrain", "--store", str(work / "store"), "--set", f"data.source={args.data}", *TINY]
    print("filling the store with one tiny pretrain run...", file=sys.stderr)
    timed(pretrain)
    (work / "bare.py").write_text(BARE_PREFECT)
    bare = [sys.executable, str(work / "bare.py"), str(work / "bare-results")]
    timed(bare)  # fills its cache
    out = {
        "help_s": timed([*cli, "--help"], repeat=args.repeat),
        "config_error_s": timed([*cli, "pretrain", "--set", "train.weight_decey=0.1"], 2, args.repeat),
        "cached_call_s": timed(pretrain, repeat=args.repeat),
        "torch_import_s": timed([sys.executable, "-c", "import torch"], repeat=args.repeat),
        "bare_prefect_cached_s": timed(bare, repeat=args.repeat),
    }
    out["cached_minus_bare_s"] = round(out["cached_call_s"] - out["bare_prefect_cached_s"], 3)
    if args.main:
        run = [*cli, "run", "--store", str(work / "main-store")]
        print("running the main job once to fill its store...", file=sys.stderr)
        out["main_first_run_s"] = timed(run)
        out["main_second_run_s"] = timed(run)
    emit(out, args.save, args.data)


if __name__ == "__main__":
    main()
