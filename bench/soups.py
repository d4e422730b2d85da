"""Benchmark: soups and merges of fine-tunes, and naive vs aligned averaging of independent models.

    python bench/soups.py --data ../shared/data/tinyshakespeare.txt [--store /tmp/asymptote-bench-soups]

The text is cut in two halves, written once under /tmp (named by the text's hash, so cache keys stay
stable between invocations): a base is pretrained on the first half; fine-tunes of it train on the
second half, the target, whose validation split is cut into held-out (every choice) and test
(reported). The sweep's learning rates are found by a basin probe (flows/soups.py BasinConfig): a
ladder down from the base's own peak learning rate, two fine-tunes per rung, the first rung whose
two-model average beats both on held-out sets the top; lengths are fractions of the base's steps.
Every soup and merge is made, scored on test and on the first half's test split (out of
distribution), each with a paired-bootstrap interval of its gain over the best single fine-tune
(chosen on held-out). Two models trained from scratch on the target are averaged naively and after
weight matching, against their ensemble. Progress goes to stderr; LAST comes one JSON line.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from common import emit


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
    save: bool = typer.Option(False, "--save", help="Also write the result to bench/results/."),
) -> None:
    from asymptote.cli import console
    from asymptote.flows.soups import soup_study
    from asymptote.recipes import resolve
    from asymptote.soups_config import SoupStudyConfig

    first, second = split_halves(data)
    overrides = [f"base.data.source={first}", f"data.source={second}", *(set_ or []), f"store.uri={store}"]
    cfg = resolve(SoupStudyConfig, recipe, overrides)
    console.print(
        f"[bold]bench soups[/bold]: base {cfg.base.model.preset} on {first}; {cfg.sweep.n_models} "
        f"fine-tunes on {second} ({cfg.sweep.engine}, basin probe of up to {cfg.sweep.basin.rungs} rungs); "
        f"{cfg.independent.members} members from scratch; "
        f"store {store}"
    )
    started = time.time()
    res = soup_study(cfg)
    for e in res.entries:
        ood = f"  OOD {e.ood_test:.4f}" if e.ood_test is not None else ""
        console.print(f"{e.kind:20s} {e.name:28s} held-out {e.heldout:.4f}  test {e.test:.4f}{ood}")
    emit(summarize(data, cfg, res, time.time() - started), save, data)


def _rounded(gains: dict) -> dict:
    return {
        k: {
            "value": round(g["value"], 4),
            "ci": [round(c, 4) for c in g["ci"]],
            "p": g["p"],
            "verdict": g["verdict"],
        }
        for k, g in gains.items()
    }


def summarize(data: str, cfg, res, wall: float) -> dict:
    """The bench's JSON: losses, gains with intervals, the OOD side, the probe and the segments."""
    names = {ft.run.rel: f"ft-{i}" for i, ft in enumerate(res.finetunes)}
    losses, ood = res.test_loss(), res.ood_test_loss()
    greedy = next((e for e in res.entries if e.name == "greedy"), None)
    gains, ood_gains = res.gains(), res.gains(ood=True)
    return {
        "data": data,
        "model": cfg.base.model.preset,
        "split": "test",
        "finetunes": len(res.finetunes),
        "independent_members": cfg.independent.members,
        "test_loss": {k: round(v, 4) for k, v in losses.items()},
        "heldout_loss": {e.name: round(e.heldout, 4) for e in res.entries if e.kind != "ingredient"},
        "best_single": names.get(res.best_single().name) if res.best_single() else None,
        "greedy_ingredients": [names.get(k, k) for k, w in greedy.weights.items() if w > 0] if greedy else [],
        "gain_over_best": _rounded(gains),
        "ood_test_loss": {k: round(v, 4) for k, v in ood.items()},
        "ood_gain_over_best": _rounded(ood_gains),
        "goals": {
            "greedy_keeps_2": bool(greedy and sum(w > 0 for w in greedy.weights.values()) >= 2),
            "greedy_beats_best_p95": bool(gains.get("greedy", {}).get("p", 0) >= 0.95),
            "uniform_or_greedy_beats_best_ood_p95": any(
                ood_gains.get(k, {}).get("p", 0) >= 0.95 for k in ("uniform", "greedy")
            ),
        },
        "basin_probe": [
            {
                "lr": round(r.lr, 6),
                "of_base_lr": r.lr_fraction,
                "heldout_along_line": [round(p["heldout"], 4) for p in r.segment.points],
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.segment.check.items()},
            }
            for r in res.probe
        ],
        "segments": {
            g.name: {
                split: [round(p[split], 4) for p in g.points]
                for split in ("heldout", "test", "ood")
                if split in g.points[0]
            }
            for g in res.segments
        },
        "hparams": [ft.hparams for ft in res.finetunes],
        "wall_s": round(wall, 1),
        "report": res.report_uri,
    }


if __name__ == "__main__":
    typer.run(main)
