"""Prefect tasks and Ray launches for soups: the fine-tune sweep, cooking soups and merges, aligned averages.

- Sweep: hyperparameters (lr, weight decay, epochs, seed) are drawn from a Ray Tune search space with
  a seeded generator, so the same config always asks for the same runs; every run is a TrainJob
  whose init_from is the base run, hence content-addressed and never trained twice. The runs execute
  as a Ray Tune experiment (engine "tune", one trial per run) or as cached Prefect train tasks
  (engine "tasks", no Tune start-up cost); both ask for the same runs/<key>.
- Cooking: one Ray task reads the ingredients one at a time from the store, scores them on held-out
  and test, makes every soup and merge, and commits each as soups/<key>/<name> (model.safetensors,
  manifest meta naming its ingredients and weights, and "model" so job.model_from_run loads it).
- Independent members: naive and weight-matched averages, and the ensemble as the reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import ray
import torch
from prefect import task
from pydantic import BaseModel
from ray import tune
from ray.tune.search.variant_generator import generate_variants

from asymptote.config import key_dict
from asymptote.infra.cluster import cluster_has_gpus, ray_ready
from asymptote.job import TrainJob
from asymptote.merges import MergeOptions
from asymptote.refs import RunRef
from asymptote.soups import SoupOptions
from asymptote.store import Store, layout
from asymptote.tasks.caching import cached
from asymptote.tasks.pretrain import run_ref, submit_train
from asymptote.versioning import step_key

Kind = Literal["ingredient", "soup", "merge", "member", "independent-average", "ensemble"]


class SoupEntry(BaseModel):
    """One model of the study (an ingredient, a soup, a merge, an average, the ensemble) and its losses."""

    name: str
    kind: Kind
    heldout: float
    """Held-out loss (the split every choice is made on)."""
    test: float
    """Test loss (reported only)."""
    rel: str | None = None
    """Store-relative path of its checkpoint (None for the ensemble, which is not one model)."""
    weights: dict[str, float] = {}
    """Ingredient -> mean mixing weight, for soups and averages."""
    info: dict[str, Any] = {}


# ----------------------------------------------------------------------------- the sweep


def sample_trials(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """n draws from a Ray Tune search space, the same for the same seed."""
    rng = np.random.RandomState(seed)
    return [cfg for _ in range(n) for _, cfg in generate_variants(space, random_state=rng)]


def _sweep_trial(config: dict[str, Any]) -> None:
    """A Tune function trainable: train (or find) the trial's run and report its summary."""
    from asymptote.tasks.launch import launch_from_trial

    job = TrainJob.model_validate(config["job"])
    summary = launch_from_trial(job)
    tune.report({"val_loss": float(summary["val_loss"]), "run": job.run_rel})


@task(name="soup-sweep", retries=1, retry_delay_seconds=5)
def tune_sweep_task(jobs: list[TrainJob], key: str) -> list[RunRef]:
    """Every job as one trial of a Ray Tune experiment stored under sweeps/<key>/tune."""
    ray_ready()
    from asymptote.tasks.launch import concurrent_runs, ray_storage

    store = Store(jobs[0].store)
    storage, fs = ray_storage(store, layout("sweep", key=key))
    trainable = tune.with_resources(_sweep_trial, {"cpu": 0.01})  # the trial waits; its run holds the CPUs
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search([j.model_dump() for j in jobs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent_runs(jobs[0].compute)),
        run_config=tune.RunConfig(name="tune", storage_path=storage, storage_filesystem=fs, verbose=0),
    )
    failed = [r.error for r in tuner.fit() if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} fine-tunes failed; first error: {failed[0]}")
    store.invalidate()
    return [run_ref(store, j.key, j.name, store.read_json(j.run_rel, "summary.json")) for j in jobs]


def run_sweep(jobs: list[TrainJob], engine: str, refresh: bool = False) -> list[RunRef]:
    """Train (or reuse) every fine-tune: a Ray Tune experiment or concurrent cached train tasks."""
    if engine == "tasks":
        futures = [submit_train(j, refresh) for j in jobs]
        return [f.result() for f in futures]
    if refresh:
        for j in jobs:
            Store(j.store).rm(j.run_rel)
    key = step_key(__name__, runs=[j.key for j in jobs], what="soup-sweep")
    return cached(tune_sweep_task, Store(jobs[0].store), refresh)(jobs, key=key)


# ----------------------------------------------------------------------------- shared evaluation helpers


class Kitchen(BaseModel):
    """Everything one cooking run needs; its key is what can change the soups."""

    ingredients: list[str]
    base: str | None
    data: str
    """Store-relative path of the target's data artifact."""
    soups: SoupOptions
    merges: MergeOptions

    def key(self, store: Store) -> str:
        digests = {
            rel: store.manifest(rel).digest
            for rel in [*self.ingredients, *([self.base] if self.base else [])]
        }
        return step_key(
            __name__,
            ingredients=self.ingredients,
            base=self.base,
            digests=digests,
            data=self.data,
            soups=key_dict(self.soups),
            merges=key_dict(self.merges),
        )


def resolve_gpu(use_gpu: bool | str) -> bool:
    """compute.use_gpu resolved where the work runs: "auto" asks the cluster (so a cached step never
    starts Ray to ask)."""
    return cluster_has_gpus() if use_gpu == "auto" else bool(use_gpu)


def _device(use_gpu: bool) -> torch.device:
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return torch.device("cuda" if use_gpu else "cpu")


def model_shape(store: Store, rels: list[str]):
    """The one model shape shared by every checkpoint (refusing a mix)."""
    from asymptote.config import ModelConfig

    shapes = {rel: ModelConfig.model_validate(store.manifest(rel).meta["model"]) for rel in rels}
    first = shapes[rels[0]]
    for rel, cfg in shapes.items():
        if cfg.model_dump(exclude={"preset"}) != first.model_dump(exclude={"preset"}):
            raise ValueError(
                f"ingredients must share one shape: {rel} differs from {rels[0]}; "
                "soup only checkpoints of one model shape"
            )
    return first


class Scorer:
    """Held-out and test losses of a model; held-out optionally on a capped, evenly spaced set of windows."""

    def __init__(self, store: Store, data_rel: str, options: SoupOptions, block: int, device: torch.device):
        from asymptote.dist import DistEnv
        from asymptote.shards import load_dataset

        _, val, _ = load_dataset(store, data_rel)
        self.heldout, self.test = options.split(val, block)
        self.block, self.windows, self.env = block, options.eval_windows, DistEnv(device=device)

    def held(self, model) -> float:
        from asymptote.evaluation import mean_loss

        return mean_loss(model, self.heldout, self.block, self.env, max_windows=self.windows)

    def tested(self, model) -> float:
        from asymptote.evaluation import mean_loss

        return mean_loss(model, self.test, self.block, self.env)


def commit_model(
    store: Store,
    rel: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """A soup as an artifact: model.safetensors + weights.json; meta names ingredients and weights."""
    from safetensors.torch import save_file

    from asymptote.checkpoint import WEIGHTS

    with store.writer(rel, kind="soup", meta=meta) as d:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / WEIGHTS))
        (d / "weights.json").write_text(json.dumps({**meta, **(extra or {})}, indent=1, default=str))


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
) -> SoupEntry:
    model.load_state_dict(tensors)
    held, test = scorer.held(model), scorer.tested(model)
    rel = f"{out}/{name}"
    commit_model(store, rel, tensors, {**meta, "heldout_loss": held, "test_loss": test}, extra)
    return SoupEntry(
        name=name,
        kind=kind,
        heldout=held,
        test=test,
        rel=rel,
        weights=meta.get("weights", {}),
        info={k: v for k, v in meta.items() if k not in ("weights", "model", "ingredients")},
    )


# ----------------------------------------------------------------------------- cooking soups and merges


def _ingredients(store: Store, rels: list[str]):
    from asymptote.soups import Checkpoint

    return [Checkpoint.from_folder(store.localize(rel), name=rel) for rel in rels]


def _score_ingredients(scorer: Scorer, model, ings) -> list[SoupEntry]:
    entries = []
    for ing in ings:
        model.load_state_dict(ing.load())
        entries.append(
            SoupEntry(
                name=ing.name,
                kind="ingredient",
                heldout=scorer.held(model),
                test=scorer.tested(model),
                rel=ing.name,
            )
        )
    return entries


def _pantry(kitchen: Kitchen, scorer: Scorer, model, ings, scores, device):
    from asymptote.data import EpochBatcher
    from asymptote.soups import Pantry

    o = kitchen.soups

    def batches():
        feed = EpochBatcher(scorer.heldout, scorer.block, o.learned_batch_size, data_seed=o.seed)
        while True:
            x, y = feed.next_batch()
            yield x.to(device), y.to(device)

    return Pantry(ings, scores, model, scorer.held, batches, o)


def _cook_soups(
    store: Store, kitchen: Kitchen, scorer: Scorer, pantry, common: dict, out: str
) -> list[SoupEntry]:
    from asymptote.soups import SOUPS

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
            _entry(store, scorer, pantry.model, name, "soup", cooked.tensors, meta, out, cooked.info)
        )
    return entries


def _cook_merges(
    store: Store, kitchen: Kitchen, scorer: Scorer, pantry, common: dict, out: str
) -> list[SoupEntry]:
    """Each merge at its best held-out scale; SLERP joins the two best ingredients by held-out loss."""
    from asymptote.merges import best_scale_merge
    from asymptote.soups import Checkpoint

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
        entries.append(
            _entry(
                store, scorer, pantry.model, method, "merge", tensors, meta, out, {"heldout_by_scale": losses}
            )
        )
    return entries


@ray.remote
def _cook_remote(store: Store, kitchen: Kitchen, out: str, use_gpu: bool) -> list[dict]:
    from asymptote.model import Decoder

    device = _device(use_gpu)
    cfg = model_shape(store, kitchen.ingredients + ([kitchen.base] if kitchen.base else []))
    scorer = Scorer(store, kitchen.data, kitchen.soups, cfg.block_size, device)
    model = Decoder(cfg).to(device).eval()
    ings = _ingredients(store, kitchen.ingredients)
    entries = _score_ingredients(scorer, model, ings)
    pantry = _pantry(kitchen, scorer, model, ings, [e.heldout for e in entries], device)
    common = {"model": cfg.model_dump(), "data": kitchen.data, "split": _split_meta(kitchen.soups)}
    entries += _cook_soups(store, kitchen, scorer, pantry, common, out)
    if kitchen.merges.methods and kitchen.base:
        entries += _cook_merges(store, kitchen, scorer, pantry, common, out)
    return [e.model_dump() for e in entries]


@task(name="cook-soups", retries=1, retry_delay_seconds=5)
def cook_task(store: Store, kitchen: Kitchen, use_gpu: bool | str, key: str) -> list[SoupEntry]:
    ray_ready()
    use_gpu = resolve_gpu(use_gpu)
    rows = ray.get(
        _cook_remote.options(num_cpus=1, num_gpus=1 if use_gpu else 0).remote(
            store, kitchen, layout("soup", key=key), use_gpu
        )
    )
    return [SoupEntry.model_validate(r) for r in rows]


def cook(
    store: Store, kitchen: Kitchen, use_gpu: bool | str = False, refresh: bool = False
) -> list[SoupEntry]:
    """Score the ingredients and make every soup and merge; cached by the kitchen's key."""
    if kitchen.merges.methods and not kitchen.base:
        raise ValueError(
            "merges are relative to a base: set base.run (the checkpoint the ingredients were "
            "fine-tuned from) or merges.methods=[]"
        )
    return cached(cook_task, store, refresh)(store, kitchen, use_gpu, key=kitchen.key(store))


# ----------------------------------------------------------------------------- independent members


def _split_meta(options: SoupOptions) -> dict[str, Any]:
    return {"heldout_fraction": options.heldout_fraction, "chunk_windows": options.split_chunk_windows}


@ray.remote
def _independent_remote(
    store: Store, members: list[str], data: str, options: SoupOptions, out: str, use_gpu: bool
) -> list[dict]:
    from asymptote.ensemble import stream_eval
    from asymptote.job import model_from_run
    from asymptote.model import Decoder
    from asymptote.soups import uniform_soup
    from asymptote.weight_matching import aligned_average

    device = _device(use_gpu)
    cfg = model_shape(store, members)
    scorer = Scorer(store, data, options, cfg.block_size, device)
    model = Decoder(cfg).to(device).eval()
    ings = _ingredients(store, members)
    entries = [e.model_copy(update={"kind": "member"}) for e in _score_ingredients(scorer, model, ings)]
    meta = {
        "model": cfg.model_dump(),
        "data": data,
        "ingredients": members,
        "weights": {m: 1 / len(members) for m in members},
        "split": _split_meta(options),
    }
    entries.append(
        _entry(
            store,
            scorer,
            model,
            "naive_avg",
            "independent-average",
            uniform_soup(ings),
            {**meta, "method": "naive_avg"},
            out,
        )
    )
    entries.append(
        _entry(
            store,
            scorer,
            model,
            "aligned_avg",
            "independent-average",
            aligned_average(ings, cfg),
            {**meta, "method": "aligned_avg (weight matching to the first member)"},
            out,
        )
    )

    def load(i):
        return model_from_run(store, members[i], device)

    losses = {
        split: stream_eval(load, len(members), tokens, cfg.block_size, cap, device=device)["logits"][-1]
        for split, tokens, cap in (
            ("heldout", scorer.heldout, options.eval_windows),
            ("test", scorer.test, None),
        )
    }
    entries.append(
        SoupEntry(
            name="ensemble",
            kind="ensemble",
            heldout=losses["heldout"],
            test=losses["test"],
            info={"combine": "logits", "members": len(members)},
        )
    )
    return [e.model_dump() for e in entries]


@task(name="independent-averages", retries=1, retry_delay_seconds=5)
def independent_task(
    store: Store, members: list[str], data: str, options: SoupOptions, use_gpu: bool | str, key: str
) -> list[SoupEntry]:
    ray_ready()
    use_gpu = resolve_gpu(use_gpu)
    remote = _independent_remote.options(num_cpus=1, num_gpus=1 if use_gpu else 0)
    rows = ray.get(remote.remote(store, members, data, options, layout("soup", key=key), use_gpu))
    return [SoupEntry.model_validate(r) for r in rows]


def independent_averages(
    store: Store,
    members: list[str],
    data: str,
    options: SoupOptions,
    use_gpu: bool | str = False,
    refresh: bool = False,
) -> list[SoupEntry]:
    """Members' losses, their naive and aligned averages, and their ensemble; cached.

    Scored on the held-out / test split of `options` (its soup methods play no part here)."""
    key = step_key(
        __name__,
        members=members,
        digests=[store.manifest(m).digest for m in members],
        data=data,
        split=_split_meta(options),
        eval_windows=options.eval_windows,
        what="independent",
    )
    return cached(independent_task, store, refresh)(store, members, data, options, use_gpu, key=key)


# ----------------------------------------------------------------------------- the plot


COLORS = {
    "ingredient": "tab:gray",
    "soup": "tab:blue",
    "merge": "tab:orange",
    "member": "tab:olive",
    "independent-average": "tab:red",
    "ensemble": "tab:green",
}


def plot_heldout_vs_test(entries: list[SoupEntry], path: str | Path, title: str = "") -> None:
    """Held-out against test loss of every model: fine-tunes, soups and merges on the left; independent
    members, their averages and their ensemble on the right (naive averages sit far off)."""
    from asymptote.plots import plt  # matplotlib configured headless there

    panels = [
        [e for e in entries if e.kind in ("ingredient", "soup", "merge")],
        [e for e in entries if e.kind in ("member", "independent-average", "ensemble")],
    ]
    panels = [p for p in panels if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), dpi=110, squeeze=False)
    for ax, group, name in zip(
        axes[0], panels, ["fine-tunes of one base", "independent members"], strict=False
    ):
        _scatter(ax, group)
        ax.set(xlabel="held-out loss (nats/token)", ylabel="test loss (nats/token)", title=f"{title}: {name}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _scatter(ax, entries: list[SoupEntry]) -> None:
    for kind, color in COLORS.items():
        pts = [e for e in entries if e.kind == kind]
        if pts:
            ax.scatter(
                [e.heldout for e in pts],
                [e.test for e in pts],
                c=color,
                label=kind,
                s=18 if kind in ("ingredient", "member") else 40,
                zorder=3,
            )
    for e in entries:
        if e.kind not in ("ingredient", "member"):
            ax.annotate(e.name, (e.heldout, e.test), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
