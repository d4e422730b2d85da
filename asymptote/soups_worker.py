"""What a soups Ray task runs on its worker: score checkpoints, cook soups and merges, commit them.

Worker side (torch at the top): the soups tasks start each of `cook`, `probe` and `independent`
in a Ray task and import this module there, so the driver never loads torch.

- Cooking: the ingredients are read one at a time from the store, scored on held-out and on the
  reported split (the target's test split),
  every soup and merge is made, and each is committed as soups/<key>/<name> (model.safetensors,
  manifest meta naming its ingredients and weights, and "model" so job.model_from_run loads it).
- Scores: held-out (every choice), and the reported split and the base corpus's test split (OOD) per
  window, so every soup's gain over the best ingredient gets a bootstrap interval paired by window.
- Basin probe: held-out loss along the line between two fine-tunes.
- Independent members: naive and weight-matched averages, and the ensemble as the reference.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from safetensors.torch import save_file

from asymptote.checkpoint import WEIGHTS
from asymptote.config import ModelConfig
from asymptote.data import EpochBatcher
from asymptote.ensemble import stream_eval
from asymptote.job import model_from_run
from asymptote.model import Decoder
from asymptote.shards import carry_tokenizer, load_split
from asymptote.soups import (
    SOUPS,
    Checkpoint,
    Pantry,
    Scorer,
    along_segment,
    basin_check,
    best_scale_merge,
    uniform_soup,
)
from asymptote.soups_config import Cooking, Kind, Kitchen, Segment, SoupEntry, SoupOptions
from asymptote.soups_gains import gain_over
from asymptote.store import Store
from asymptote.weight_matching import aligned_average


def device(use_gpu: bool, cpus: int = 1) -> torch.device:
    """The task's device; torch uses as many threads as the task holds CPUs."""
    torch.set_num_threads(max(1, cpus))
    return torch.device("cuda" if use_gpu else "cpu")


def model_shape(store: Store, rels: list[str]) -> ModelConfig:
    """The one model shape shared by every checkpoint (refusing a mix)."""
    shapes = {rel: ModelConfig.model_validate(store.manifest(rel).meta["model"]) for rel in rels}
    first = shapes[rels[0]]
    for rel, cfg in shapes.items():
        if cfg.model_dump(exclude={"preset"}) != first.model_dump(exclude={"preset"}):
            raise ValueError(
                f"ingredients must share one shape: {rel} differs from {rels[0]}; "
                "soup only checkpoints of one model shape"
            )
    return first


def make_scorer(
    store: Store,
    data_rel: str,
    options: SoupOptions,
    block: int,
    device: torch.device,
    ood_rel: str | None = None,
) -> Scorer:
    """The soups' Scorer: held-out from the target's validation split; figures on its test split, or
    on the validation chunks not held-out when it has none; OOD on the pretraining corpus's test split
    (its validation split when it has none). Each reported split carries its real name."""
    heldout, rest = options.split(load_split(store, data_rel, "val"), block)
    test = load_split(store, data_rel, "test")
    split = "test" if len(test) > block else "validation (not held-out)"
    scorer = Scorer(
        heldout, test if split == "test" else rest, block, options.eval_windows, device, split=split
    )
    if ood_rel:
        scorer.ood = load_split(store, ood_rel, "test")
        if len(scorer.ood) <= block:
            scorer.ood, scorer.ood_split = load_split(store, ood_rel, "val"), "validation"
    return scorer


def commit_model(
    store: Store,
    rel: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
    kind: str = "soup",
) -> None:
    """A soup (or a merge: `kind`, as `asymptote store ls` lists it) as an artifact: model.safetensors +
    weights.json; meta names ingredients and weights."""
    with store.writer(rel, kind=kind, meta=meta) as d:
        if meta.get("data"):  # the soup decodes with its ingredients' tokenizer
            meta.update(carry_tokenizer(store, meta["data"], d))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / WEIGHTS))
        (d / "weights.json").write_text(json.dumps({**meta, **(extra or {})}, indent=1, default=str))


class Scores(BaseModel):
    """One model's losses: held-out (choices), the reported split and OOD per window (reports, bootstraps)."""

    heldout: float
    test: list[float]
    ood: list[float] | None = None

    @classmethod
    def of(cls, scorer: Scorer, model) -> "Scores":
        ood = scorer.ood_windows(model)
        return cls(
            heldout=scorer.held(model),
            test=scorer.test_windows(model).tolist(),
            ood=None if ood is None else ood.tolist(),
        )

    def fields(self, best: "Scores | None" = None, n: int = 2000) -> dict[str, Any]:
        """SoupEntry fields: losses (and per window), and gains over `best` (the best ingredient) with
        intervals over windows (one base: no seed noise; bench/soups.py pools bases)."""
        out = {"heldout": self.heldout, "test": float(np.mean(self.test)), "test_windows": self.test}
        out["ood_test"] = float(np.mean(self.ood)) if self.ood is not None else None
        out["ood_windows"] = self.ood
        if best is not None:
            out["gain"] = gain_over([np.array(best.test)], [np.array(self.test)], n)
            if self.ood is not None and best.ood is not None:
                out["ood_gain"] = gain_over([np.array(best.ood)], [np.array(self.ood)], n)
        return out


def _entry(
    store: Store,
    scorer: Scorer,
    model,
    name: str,
    kind: Kind,
    tensors,
    meta: dict,
    out: str,
    extra: dict | None = None,
    best: Scores | None = None,
    n_boot: int = 2000,
) -> SoupEntry:
    model.load_state_dict(tensors)
    scores = Scores.of(scorer, model)
    fields = scores.fields(best, n_boot)
    rel = f"{out}/{name}"
    losses = {"heldout_loss": fields["heldout"], "test_loss": fields["test"], "test_split": scorer.split}
    commit_model(store, rel, tensors, {**meta, **losses}, extra, kind="merge" if kind == "merge" else "soup")
    return SoupEntry(
        name=name,
        kind=kind,
        rel=rel,
        weights=meta.get("weights", {}),
        info={k: v for k, v in meta.items() if k not in ("weights", "model", "ingredients")},
        **fields,
    )


# ----------------------------------------------------------------------------- cooking soups and merges


def _ingredients(store: Store, rels: list[str]) -> list[Checkpoint]:
    return [Checkpoint.from_folder(store.localize(rel), name=rel) for rel in rels]


def _score_ingredients(
    scorer: Scorer, model, ings, kind: Kind = "ingredient"
) -> tuple[list[SoupEntry], list[Scores]]:
    entries, scores = [], []
    for ing in ings:
        model.load_state_dict(ing.load())
        scores.append(Scores.of(scorer, model))
        entries.append(SoupEntry(name=ing.name, kind=kind, rel=ing.name, **scores[-1].fields()))
    return entries, scores


def _pantry(kitchen: Kitchen, scorer: Scorer, model, ings, scores, device) -> Pantry:
    o = kitchen.soups

    def batches():
        feed = EpochBatcher(scorer.heldout, scorer.block, o.learned_batch_size, data_seed=o.seed)
        while True:
            x, y = feed.next_batch()
            yield x.to(device), y.to(device)

    return Pantry(ings, scores, model, scorer.held, batches, o)


def _cook_soups(
    store: Store, kitchen: Kitchen, scorer: Scorer, pantry: Pantry, common: dict, out: str, best: Scores
) -> list[SoupEntry]:
    entries = []
    for name in kitchen.soups.methods:
        cooked = SOUPS[name](pantry)
        meta = {
            **common,
            "method": name,
            "ingredients": kitchen.ingredients,
            "weights": dict(zip(kitchen.ingredients, cooked.weights, strict=False)),
        }
        entries.append(
            _entry(
                store,
                scorer,
                pantry.model,
                name,
                "soup",
                cooked.tensors,
                meta,
                out,
                cooked.info,
                best,
                kitchen.soups.bootstrap,
            )
        )
    return entries


def _cook_merges(
    store: Store, kitchen: Kitchen, scorer: Scorer, pantry: Pantry, common: dict, out: str, best: Scores
) -> list[SoupEntry]:
    """Each merge at its best held-out scale; SLERP joins the two best ingredients by held-out loss."""
    base = Checkpoint.from_folder(store.localize(kitchen.base), name=kitchen.base)
    ranked = [pantry.ingredients[k] for k in np.argsort(pantry.scores, kind="stable")]
    entries = []
    for method in kitchen.merges.methods:
        members = ranked[:2] if method == "slerp" else list(pantry.ingredients)
        tensors, scale, losses = best_scale_merge(
            base, members, method, kitchen.merges, pantry.model, scorer.held
        )
        meta = {
            **common,
            "method": method,
            "base": kitchen.base,
            "ingredients": [m.name for m in members],
            "weights": {m.name: 1 / len(members) for m in members},
            "scale": scale,
            "options": kitchen.merges.for_method(method),
        }
        extra = {"heldout_by_scale": losses}
        entries.append(
            _entry(
                store,
                scorer,
                pantry.model,
                method,
                "merge",
                tensors,
                meta,
                out,
                extra,
                best,
                kitchen.soups.bootstrap,
            )
        )
    return entries


def segment(scorer: Scorer, model, start, end, points: int, name: str, full: bool = True) -> Segment:
    """Losses along start -> end (Checkpoints); held-out only unless `full` (the reported split, as
    "test", and OOD, for the plot)."""

    def evaluate(m) -> dict[str, float]:
        row = {"heldout": scorer.held(m)}
        if full:
            row["test"] = float(scorer.test_windows(m).mean())
            ood = scorer.ood_windows(m)
            if ood is not None:
                row["ood"] = float(ood.mean())
        return row

    rows = along_segment(model, start.load(), end.load(), np.linspace(0, 1, points), evaluate)
    check = basin_check([r["heldout"] for r in rows])
    return Segment(name=name, start=start.name, end=end.name, points=rows, check=check)


def _segments(
    store: Store, kitchen: Kitchen, scorer: Scorer, pantry: Pantry, entries: list[SoupEntry]
) -> list[Segment]:
    """The two best ingredients (held-out) joined, and the base joined to the greedy (else first) soup."""
    n = kitchen.soups.curve_points
    ranked = [pantry.ingredients[k] for k in np.argsort(pantry.scores, kind="stable")]
    out = []
    if len(ranked) >= 2:
        out.append(segment(scorer, pantry.model, ranked[0], ranked[1], n, "best two ingredients"))
    soups = {e.name: e for e in entries if e.kind == "soup"}
    soup = soups.get("greedy") or next(iter(soups.values()), None)
    if kitchen.base and soup:
        base = Checkpoint.from_folder(store.localize(kitchen.base), name=kitchen.base)
        end = Checkpoint.from_folder(store.localize(soup.rel), name=soup.name)
        out.append(segment(scorer, pantry.model, base, end, n, f"base to {soup.name} soup"))
    return out


def cook_with(store: Store, kitchen: Kitchen, scorer: Scorer, model, out: str, device=None) -> Cooking:
    """Score the ingredients, make every soup and merge, and the segments. Every choice reads
    scorer.held only; the best single is the ingredient with the lowest held-out loss."""
    ings = _ingredients(store, kitchen.ingredients)
    entries, scores = _score_ingredients(scorer, model, ings)
    held = [s.heldout for s in scores]
    best = scores[int(np.argmin(held))]
    pantry = _pantry(kitchen, scorer, model, ings, held, device or torch.device("cpu"))
    common = {"model": model.cfg.model_dump(), "data": kitchen.data, "split": kitchen.soups.split_meta()}
    entries += _cook_soups(store, kitchen, scorer, pantry, common, out, best)
    if kitchen.merges.methods and kitchen.base:
        entries += _cook_merges(store, kitchen, scorer, pantry, common, out, best)
    segments = _segments(store, kitchen, scorer, pantry, entries)
    ood_split = scorer.ood_split if scorer.ood is not None else None
    return Cooking(entries=entries, segments=segments, split=scorer.split, ood_split=ood_split)


# ----------------------------------------------------------------------------- the three Ray task bodies


def cook(store: Store, kitchen: Kitchen, out: str, device: torch.device) -> dict:
    """Every soup and merge of the kitchen, committed under `out` (Cooking as a dict)."""
    cfg = model_shape(store, kitchen.ingredients + ([kitchen.base] if kitchen.base else []))
    scorer = make_scorer(store, kitchen.data, kitchen.soups, cfg.block_size, device, kitchen.ood_data)
    model = Decoder(cfg).to(device).eval()
    return cook_with(store, kitchen, scorer, model, out, device).model_dump()


def probe(store: Store, a: str, b: str, data: str, options: SoupOptions, device: torch.device) -> dict:
    """Held-out loss along the line between two fine-tunes (Segment as a dict); never reads test."""
    cfg = model_shape(store, [a, b])
    scorer = make_scorer(store, data, options, cfg.block_size, device)
    model = Decoder(cfg).to(device).eval()
    ends = _ingredients(store, [a, b])
    return segment(scorer, model, ends[0], ends[1], options.curve_points, "probe", full=False).model_dump()


def independent(
    store: Store, members: list[str], data: str, options: SoupOptions, out: str, device: torch.device
) -> list[dict]:
    """Members' losses, their naive and weight-matched averages (committed under `out`), their ensemble."""
    cfg = model_shape(store, members)
    scorer = make_scorer(store, data, options, cfg.block_size, device)
    model = Decoder(cfg).to(device).eval()
    ings = _ingredients(store, members)
    entries = _score_ingredients(scorer, model, ings, kind="member")[0]
    meta = {
        "model": cfg.model_dump(),
        "data": data,
        "ingredients": members,
        "weights": {m: 1 / len(members) for m in members},
        "split": options.split_meta(),
    }
    averages = {  # made one at a time: each is a whole model in memory
        "naive_avg": (lambda: uniform_soup(ings), "naive_avg"),
        "aligned_avg": (
            lambda: aligned_average(ings, cfg),
            "aligned_avg (weight matching to the first member)",
        ),
    }
    for name, (make, method) in averages.items():
        tensors, method_meta = make(), {**meta, "method": method}
        entries.append(_entry(store, scorer, model, name, "independent-average", tensors, method_meta, out))
    entries.append(_ensemble(store, members, scorer, options, cfg, device))
    return [e.model_dump() for e in entries]


def _ensemble(
    store: Store, members: list[str], scorer: Scorer, options: SoupOptions, cfg, device
) -> SoupEntry:
    """The members' logit ensemble on held-out and the reported split: what the averages are judged by."""

    def load(i):
        return model_from_run(store, members[i], device)

    losses = {
        split: stream_eval(load, len(members), tokens, cfg.block_size, cap, device=device)["logits"][-1]
        for split, tokens, cap in (
            ("heldout", scorer.heldout, options.eval_windows),
            ("test", scorer.test, None),
        )
    }
    return SoupEntry(
        name="ensemble",
        kind="ensemble",
        heldout=losses["heldout"],
        test=losses["test"],
        info={"combine": "logits", "members": len(members)},
    )
