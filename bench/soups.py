"""Benchmark: soups and merges of fine-tunes, and naive vs aligned averaging of independent models.

    python bench/soups.py --data ../shared/data/tinyshakespeare.txt [--store /tmp/asymptote-bench-soups]

The text is cut in two halves, written once under /tmp (named by the text's hash, so cache keys stay
stable between invocations): a base is pretrained on the first half; 10 fine-tunes of it (a Ray Tune
search over lr, weight decay, epochs and seed) train on the second half, the target, whose validation
split is cut into held-out (every choice) and test (reported). Every soup and merge is made, and two
models trained from scratch on the target are averaged naively and after weight matching, against
their ensemble. Progress goes to stderr; LAST comes one JSON line with every test loss under
`test_loss` (best_single = the fine-tune with the best held-out loss, scored on test).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer


def split_halves(data: str) -> tuple[str, str]:
    """Write the first and second half of the text to /tmp (never the repository); return both paths."""
    from asymptote.data import read_source

    blob = read_source(os.path.abspath(data) if "://" not in data else data)
    folder = (
        Path(tempfile.gettempdir()) / "asymptote-bench-soups-data" / hashlib.sha256(blob).hexdigest()[:16]
    )
    folder.mkdir(parents=True, exist_ok=True)
    cut = blob.rfind(b"\n", 0, len(blob) // 2) + 1 or len(blob) // 2  # at a line break
    paths = []
    for name, part in (("pretrain-half.txt", blob[:cut]), ("target-half.txt", blob[cut:])):
        path = folder / name
        if not path.exists() or path.read_bytes() != part:
            path.write_bytes(part)
        paths.append(str(path))
    return paths[0], paths[1]


def main(
    data: str = typer.Option(..., "--data", help="Text file (or folder of .txt) to cut in two."),
    store: str = typer.Option("/tmp/asymptote-bench-soups", "--store", help="Artifact store (cache)."),
    recipe: str = typer.Option("soups-bench", "--recipe", "-r", help="Recipe name or YAML path."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Extra overrides: section.field=value."
    ),
) -> None:
    from asymptote.cli import console
    from asymptote.flows.soups import SoupStudyConfig, soup_study
    from asymptote.recipes import resolve

    first, second = split_halves(data)
    overrides = [f"base.data.source={first}", f"data.source={second}", *(set_ or []), f"store.uri={store}"]
    cfg = resolve(SoupStudyConfig, recipe, overrides)
    console.print(
        f"[bold]bench soups[/bold]: base {cfg.base.model.preset} on {first}; {cfg.sweep.n_models} "
        f"fine-tunes on {second} ({cfg.sweep.engine}); {cfg.independent.members} members from scratch; "
        f"store {store}"
    )
    started = time.time()
    res = soup_study(cfg)
    wall = time.time() - started
    for e in res.entries:
        console.print(f"{e.kind:20s} {e.name:28s} held-out {e.heldout:.4f}  test {e.test:.4f}")
    losses = res.test_loss()
    summary = {
        "data": data,
        "model": cfg.base.model.preset,
        "finetunes": len(res.finetunes),
        "independent_members": cfg.independent.members,
        "test_loss": losses,
        "heldout_loss": {e.name: e.heldout for e in res.entries if e.kind != "ingredient"},
        "greedy_beats_or_ties_best_single": losses["greedy"] <= losses["best_single"],
        "hparams": [ft.hparams for ft in res.finetunes],
        "wall_s": round(wall, 1),
        "report": res.report_uri,
    }
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    typer.run(main)
