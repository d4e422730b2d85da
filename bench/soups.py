"""Benchmark: model soups over several bases, greedy's gain over the best single pooled across them.

    python bench/soups.py --data ../shared/data/tinyshakespeare.txt [--protocol bench/protocols/soups.json]
        [--store PATH] [--seed-offset N] [--save]

Everything the run does is in the protocol file (bench/protocols/soups.json, fixed before the run; its
hash and the commit are printed and land in the JSON line):

1. The text is cut in two halves, written once under /tmp (named by the text's hash, so cache keys stay
   stable between invocations): bases pretrain on the first half; their fine-tunes train on the second,
   the target. Held-out (every choice) is part of the target's validation split; figures are on the
   target's test split, and out of distribution on the first half's test split.
2. Per base (the protocol's `bases`, each a seed: the base's training seeds and its sweep's draws), one
   soups study (flows/soups.py): a basin probe for the learning-rate range, the fine-tune sweep, every
   soup and merge, and the same two independent members averaged naively and after weight matching.
3. Pooled: each soup's and merge's gain over its own base's best single fine-tune (chosen on held-out),
   by the hierarchical bootstrap of asymptote.stats with base i's best single and soups paired as seed
   i, then the test windows shared by all. Progress goes to stderr; LAST comes one JSON line.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import emit, load_protocol, parser, protocol_fields, store_uri

from asymptote.recipes import resolve
from asymptote.soups_config import SoupStudyConfig, SoupStudyResult
from asymptote.soups_gains import gain_over


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def split_halves(data: str) -> tuple[str, str]:
    """Write the first and second half of the text to /tmp (never the repository); return both paths."""
    from asymptote.data import read_source

    blob = read_source(data if data.startswith("builtin:") or "://" in data else os.path.abspath(data))
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


def base_config(proto: dict, seed: int, offset: int, halves: tuple[str, str], store: str) -> SoupStudyConfig:
    """The soups study of one base: the protocol's config with this base's seeds and the two halves."""
    first, second = halves
    overrides = [
        f"name=soups-base{seed}",
        f"base.data.source={first}",
        f"data.source={second}",
        f"base.train.train_seed={seed}",
        f"base.train.data_seed={seed}",
        f"sweep.seed={seed}",
        f"independent.train.train_seed={offset}",
        f"independent.train.data_seed={offset}",
        f"store.uri={store}",
    ]
    return resolve(SoupStudyConfig, base=proto["config"], overrides=overrides)


def pooled(results: list[SoupStudyResult], ood: bool, analysis: dict) -> dict[str, dict]:
    """Per soup and merge: its gain over its base's best single, bases paired as seeds, then windows."""
    attr = "ood_windows" if ood else "test_windows"
    names = [e.name for e in results[0].entries if e.kind in ("soup", "merge")]
    out = {}
    for name in names:
        refs = [getattr(r.best_single(), attr) for r in results]
        cands = [getattr(r.entry(name), attr) for r in results]
        if any(w is None for w in refs + cands):
            continue
        gain = gain_over(
            [np.array(w) for w in refs], [np.array(w) for w in cands], analysis["n_boot"], analysis["seed"]
        )
        out[name] = {k: _round(v) for k, v in gain.items()}
    return out


def _round(value):
    if isinstance(value, float):
        return round(value, 4)
    return [_round(v) for v in value] if isinstance(value, list) else value


def per_base(seed: int, res: SoupStudyResult) -> dict:
    """One base's figures: its best single, greedy's ingredients and each soup's window-only gain."""
    names = {ft.run.rel: f"ft-{i}" for i, ft in enumerate(res.finetunes)}
    greedy = res.entry("greedy")
    best = res.best_single()
    return {
        "seed": seed,
        "base": res.base,
        "best_single": names.get(best.name, best.name) if best else None,
        "greedy_ingredients": [names.get(k, k) for k, w in greedy.weights.items() if w > 0] if greedy else [],
        "test_loss": {k: round(v, 4) for k, v in res.test_loss().items()},
        "ood_test_loss": {k: round(v, 4) for k, v in res.ood_test_loss().items()},
        "gain_over_best": {k: _round(g["estimate"]) for k, g in res.gains().items()},
        "basin_probe_lr": [round(r.lr, 6) for r in res.probe],
        "hparams": [ft.hparams for ft in res.finetunes],
        "report": res.report_uri,
    }


def summarize(proto: dict, seeds: list[int], results: list[SoupStudyResult]) -> dict:
    """The bench's JSON: pooled gains with intervals, in and out of distribution, and each base's figures."""
    analysis = proto["analysis"]
    gains, ood_gains = pooled(results, False, analysis), pooled(results, True, analysis)
    splits = {r.split for r in results}
    mean_loss = {
        k: round(float(np.mean([r.test_loss()[k] for r in results])), 4)
        for k in results[0].test_loss()
        if all(k in r.test_loss() for r in results)
    }
    headline, ood_names = gains.get(analysis["headline"], {}), analysis["ood_headline"]
    bases = [per_base(s, r) for s, r in zip(seeds, results, strict=True)]
    return {
        "model": proto["config"]["base"]["model"]["preset"],
        "split": splits.pop() if len(splits) == 1 else sorted(splits),
        "ood_split": results[0].ood_split,
        "bases": len(results),
        "finetunes_per_base": [len(r.finetunes) for r in results],
        "greedy_gain": headline,
        "gain_over_best": gains,
        "ood_gain_over_best": ood_gains,
        "greedy_ingredients": [b["greedy_ingredients"] for b in bases],
        "test_loss_mean_over_bases": mean_loss,
        "goals": {
            "greedy_beats_best_ci_above_0": bool(headline and headline["ci"][0] > 0),
            "uniform_or_greedy_beats_best_ood_ci_above_0": any(
                ood_gains.get(k, {}).get("ci", [0])[0] > 0 for k in ood_names
            ),
        },
        "per_base": bases,
    }


def main() -> None:
    p = parser(
        "Model soups over several bases: greedy's gain over the best single, pooled.", protocol="soups"
    )
    args = p.parse_args()
    proto = load_protocol(args.protocol)
    if len(proto["bases"]) < 3:
        log(f"warning: {len(proto['bases'])} base(s); the pooled interval needs 3 or more to mean much")
    started, store = time.time(), store_uri(args.store)
    from asymptote.flows.soups import soup_study  # starts Prefect: only once the protocol has been read

    halves = split_halves(args.data)
    seeds = [s + args.seed_offset for s in proto["bases"]]
    results = []
    for seed in seeds:
        cfg = base_config(proto, seed, args.seed_offset, halves, store)
        log(
            f"base seed {seed}: {cfg.base.model.preset} on {halves[0]}; {cfg.sweep.n_models} fine-tunes; store {store}"
        )
        results.append(soup_study(cfg))
        for e in results[-1].entries:
            log(f"  {e.kind:20s} {e.name:28s} held-out {e.heldout:.4f}  {results[-1].split} {e.test:.4f}")
    result = {"data": args.data} | summarize(proto, seeds, results)
    result |= protocol_fields(proto, args.seed_offset) | {"wall_s": round(time.time() - started, 1)}
    emit(result, args.save, args.data)


if __name__ == "__main__":
    main()
