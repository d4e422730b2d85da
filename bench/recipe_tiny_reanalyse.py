"""Re-derive a finished scaling study's verdicts from its store, training nothing.

For when the study's code changed after it ran (its cache keys no longer match, so rerunning
bench/recipe_tiny.py would retrain every run): this reads the study's measured test losses from its
report (reports/scaling/<key>/study.json), finds each size's ensemble members in the store by their
run names, evaluates every weighted ensemble of them per block of test windows (what the member
bootstrap needs; evaluation only, on the test split), checks the single-member losses against the
stored ones, and runs the current analysis, report and plots. Progress goes to stderr; the last line
on stdout is one JSON object like bench/recipe_tiny.py's.

    python bench/recipe_tiny_reanalyse.py --store /tmp/copy-of-store --out /tmp/reanalysis
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer


def _log(msg: str) -> None:
    print(f"[reanalyse] {msg}", file=sys.stderr, flush=True)


def _members(store, label: str) -> dict[int, list[str]]:
    """Member index (0-based) -> runs named '<label> member <k>' (normally one each)."""
    pattern = re.compile(rf"^{re.escape(label)} member (\d+)$")
    out: dict[int, list[str]] = {}
    for rel in store.artifacts("runs"):
        meta = store.manifest(rel).meta
        m = pattern.match(meta.get("config", {}).get("name", ""))
        if m:
            out.setdefault(int(m.group(1)) - 1, []).append(rel)
    return out


def _evaluate(store, size, runs: dict[int, list[str]]) -> tuple[dict, list[str]]:
    """Multiset losses of the size's members, checked against its stored member test losses."""
    import numpy as np
    import torch

    from asymptote.ensemble_windows import multiset_losses
    from asymptote.job import model_from_run
    from asymptote.shards import load_split

    chosen = []
    for i, stored in enumerate(size.members):
        for rel in runs.get(i, []):
            meta = store.manifest(rel).meta
            tokens = load_split(store, meta["config"]["data_artifact"], "test")
            model = model_from_run(store, rel)
            out = multiset_losses([model], tokens, model.cfg.block_size)
            if abs(float(np.average(out["losses"]["0"], weights=out["windows"])) - stored) < 1e-4:
                chosen.append(rel)
                break
        else:
            raise SystemExit(f"{size.label}: no stored run reproduces member {i + 1}'s test loss {stored}")
    models = [model_from_run(store, rel) for rel in chosen]
    torch.set_num_threads(1)
    return multiset_losses(models, tokens, models[0].cfg.block_size), chosen


def _add_multisets(st, study) -> dict[str, list[str]]:
    """Evaluate every size's weighted ensembles into the study; returns the member runs used."""
    import numpy as np

    members = {}
    for size in study.sizes:
        ms, chosen = _evaluate(st, size, _members(st, size.label))
        size.multisets, size.windows = ms["losses"], ms["windows"]
        size.subsets = {
            k: float(np.average(v, weights=ms["windows"]))
            for k, v in ms["losses"].items()
            if len(set(k.split(","))) == len(k.split(","))
        }
        members[size.label] = chosen
        _log(f"{size.label}: {len(ms['losses'])} weighted ensembles x {len(ms['windows'])} test blocks")
    return members


def main(
    store: str = typer.Option(
        ..., "--store", help="Store of a finished scaling study (a copy: nothing is written)."
    ),
    report: Optional[str] = typer.Option(
        None, "--report", help="reports/scaling/<key> (default: the only one)."
    ),
    study_file: str = typer.Option("study.json", "--study-file", help="The study's file in the report."),
    out: str = typer.Option("/tmp/reanalysis", "--out", help="Folder for the new report and plots."),
    recipe: str = typer.Option("scaling-tiny", "--recipe", help="Recipe of the study ('' = defaults)."),
    reuse: bool = typer.Option(False, "--reuse", help="Reuse <out>/measured.json from an earlier run."),
) -> None:
    from asymptote.config import StoreConfig
    from asymptote.recipes import resolve
    from asymptote.reports.scaling import render
    from asymptote.scaling_analysis import StudyData, analyse, figures
    from asymptote.scaling_config import ScalingStudyConfig
    from asymptote.store import Store

    started = time.time()
    st = Store(StoreConfig(uri=store))
    reports = [r for r in st.artifacts("reports/scaling")] if report is None else [report]
    if len(reports) != 1:
        raise SystemExit(f"pass --report: {len(reports)} scaling reports in {store}: {reports}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / "measured.json"
    if reuse and saved.exists():
        saved_data = json.loads(saved.read_text())
        study, members = StudyData.model_validate(saved_data["study"]), saved_data["members"]
    else:
        study = StudyData.model_validate(st.read_json(reports[0], study_file)["study"])
        members = _add_multisets(st, study)
        saved.write_text(json.dumps({"study": study.model_dump(), "members": members}))
    cfg = (
        resolve(ScalingStudyConfig, recipe, [f"store.uri={store}"])
        if recipe
        else ScalingStudyConfig.model_validate({"store": {"uri": store}})
    )
    analysis = analyse(study, cfg.fits)
    f = figures(study, analysis)
    markdown, files = render(cfg, SimpleNamespace(uri=f"{store} (re-analysed)"), [], study, analysis)
    (folder / "report.md").write_text(markdown)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    result = {
        "reanalysed_from": f"{store}/{reports[0]}",
        "trained": 0,
        "members_evaluated": members,
        "split": f["split"],
        "sizes": f["sizes"],
        "claims": f["claims"],
        **{
            k: {"value": f[f"{k}_asymptote"], "ci": f[f"{k}_asymptote_ci"]}
            for k in ("regularized", "standard", "joint")
        },
        "seed_noise": f["seed_noise"],
        "loss_per_k": f["loss_per_k"],
        "data_efficiency": f["data_efficiency"],
        **{k: f[k] for k in ("wd_overfit_fixed", "ensemble_monotone_in_k", "joint_below_regularized")},
        "report": str(folder / "report.md"),
        "wall_s": round(time.time() - started, 1),
    }
    sys.stdout.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    typer.run(main)
