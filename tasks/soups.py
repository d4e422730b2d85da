"""Prefect tasks and Ray launches for soups: the fine-tune sweep, cooking soups and merges, aligned averages.

- Sweep: hyperparameters (lr, weight decay, epochs, seed) are drawn from a Ray Tune search space with
  a seeded generator, so the same config always asks for the same runs; every run is a TrainJob
  whose init_from is the base run, hence content-addressed and never trained twice. The runs execute
  as a Ray Tune experiment (engine "tune", one trial per run) or as cached Prefect train tasks
  (engine "tasks", no Tune start-up cost); both ask for the same runs/<key>.
- Cooking: one Ray task reads the ingredients one at a time from the store, scores them on held-out
  and test, makes every soup and merge, and commits each as soups/<key>/<name> (model.safetensors,
  manifest meta naming its ingredients and weights, and "model" so job.model_from_run loads it).
- Scores: held-out (every choice), and test and the base corpus's test split (OOD) per window, so
  every soup's gain over the best ingredient gets a paired-bootstrap interval.
- Basin probe: held-out loss along the line between two fine-tunes (cached), for the sweep's rule.
- Independent members: naive and weight-matched averages, and the ensemble as the reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from prefect import task
from pydantic import BaseModel

from asymptote.config import key_dict
from asymptote.infra.cluster import cluster_has_gpus, ray_ready
from asymptote.infra.launch import launch_from_trial, tune_experiment
from asymptote.infra.remotes import remote
from asymptote.job_spec import TrainJob
from asymptote.refs import RunRef
from asymptote.soups_config import MergeOptions, SoupOptions
from asymptote.store import Store, layout
from asymptote.tasks.caching import cached
from asymptote.tasks.pretrain import run_ref, submit_train
from asymptote.versioning import step_key

if TYPE_CHECKING:  # torch and Ray load in the task bodies: importing the soups flow needs neither
    import torch

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
    ood_test: float | None = None
    """Loss on the pretraining corpus's test split (off the fine-tuning distribution; reported only)."""
    gain: dict[str, Any] | None = None
    """Soups and merges: test gain over the best ingredient (chosen on held-out): value, ci, p, verdict."""
    ood_gain: dict[str, Any] | None = None
    """The same gain on the pretraining corpus's test split."""


class Segment(BaseModel):
    """Losses along the straight line (1 - alpha) start + alpha end between two models."""

    name: str
    start: str
    end: str
    points: list[dict[str, float]]
    """Per alpha: heldout, and (for the report's plot) test and ood where scored."""
    check: dict[str, Any] = {}
    """basin_check of the held-out losses: barrier, midpoint_gain, soups."""


class Cooking(BaseModel):
    """What one cooking run returns: every model's losses and the interpolation segments."""

    entries: list[SoupEntry]
    segments: list[Segment] = []


# ----------------------------------------------------------------------------- the sweep


def sample_trials(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """n draws from a Ray Tune search space, the same for the same seed."""
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.RandomState(seed)
    return [cfg for _ in range(n) for _, cfg in generate_variants(space, random_state=rng)]


def _sweep_trial(config: dict[str, Any]) -> None:
    """A Tune function trainable: train (or find) the trial's run and report its summary."""
    from ray import tune

    job = TrainJob.model_validate(config["job"])
    summary = launch_from_trial(job)
    tune.report({"val_loss": float(summary["val_loss"]), "run": job.run_rel})


@task(name="soup-sweep", retries=1, retry_delay_seconds=5)
def tune_sweep_task(jobs: list[TrainJob], key: str) -> list[RunRef]:
    """Every job as one trial of a Ray Tune experiment stored under sweeps/<key>/tune."""
    from ray import tune

    ray_ready()
    store = Store(jobs[0].store)
    trainable = tune.with_resources(_sweep_trial, {"cpu": 0.01})  # the trial waits; its run holds the CPUs
    space = {"job": tune.grid_search([j.model_dump() for j in jobs])}
    grid = tune_experiment(store, layout("sweep", key=key), "tune", trainable, space, jobs[0].compute)
    failed = [r.error for r in grid if r.error]
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
    ood_data: str | None = None
    """Store-relative path of the pretraining corpus's data artifact: its test split is the
    out-of-distribution side (None: not scored)."""

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
            ood_data=self.ood_data,
            soups=key_dict(self.soups),
            merges=key_dict(self.merges),
        )


def resolve_gpu(use_gpu: bool | str) -> bool:
    """compute.use_gpu resolved where the work runs: "auto" asks the cluster (so a cached step never
    starts Ray to ask)."""
    return cluster_has_gpus() if use_gpu == "auto" else bool(use_gpu)


def _device(use_gpu: bool) -> torch.device:
    import ray
    import torch

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


def make_scorer(
    store: Store,
    data_rel: str,
    options: SoupOptions,
    block: int,
    device: torch.device,
    ood_rel: str | None = None,
):
    """The soups' Scorer on the target's held-out / test split (and the pretraining corpus's test split)."""
    from asymptote.shards import load_dataset
    from asymptote.soups import Scorer

    _, val, _ = load_dataset(store, data_rel)
    heldout, test = options.split(val, block)
    ood = options.split(load_dataset(store, ood_rel)[1], block)[1] if ood_rel else None
    return Scorer(heldout, test, block, options.eval_windows, device, ood)


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
    from asymptote.shards import carry_tokenizer

    with store.writer(rel, kind="soup", meta=meta) as d:
        if meta.get("data"):  # the soup decodes with its ingredients' tokenizer
            meta.update(carry_tokenizer(store, meta["data"], d))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / WEIGHTS))
        (d / "weights.json").write_text(json.dumps({**meta, **(extra or {})}, indent=1, default=str))


class Scores(BaseModel):
    """One model's losses: held-out (choices), test and OOD per window (reports, bootstraps)."""

    heldout: float
    test: list[float]
    ood: list[float] | None = None

    @classmethod
    def of(cls, scorer, model) -> "Scores":
        ood = scorer.ood_windows(model)
        return cls(
            heldout=scorer.held(model),
            test=scorer.test_windows(model).tolist(),
            ood=None if ood is None else ood.tolist(),
        )

    def fields(self, best: "Scores | None" = None, n: int = 2000) -> dict[str, Any]:
        """SoupEntry fields: losses, and gains over `best` (the best ingredient) with intervals."""
        from asymptote.soups import paired_bootstrap, verdict

        out = {"heldout": self.heldout, "test": float(np.mean(self.test))}
        out["ood_test"] = float(np.mean(self.ood)) if self.ood is not None else None
        if best is not None:
            gain = paired_bootstrap(np.array(best.test), np.array(self.test), n)
            out["gain"] = gain | {"verdict": verdict(gain)}
            if self.ood is not None and best.ood is not None:
                ood = paired_bootstrap(np.array(best.ood), np.array(self.ood), n)
                out["ood_gain"] = ood | {"verdict": verdict(ood)}
        return out


def _entry(
    store: Store,
    scorer,
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
    commit_model(
        store, rel, tensors, {**meta, "heldout_loss": fields["heldout"], "test_loss": fields["test"]}, extra
    )
    return SoupEntry(
        name=name,
        kind=kind,
        rel=rel,
        weights=meta.get("weights", {}),
        info={k: v for k, v in meta.items() if k not in ("weights", "model", "ingredients")},
        **fields,
    )


# ----------------------------------------------------------------------------- cooking soups and merges


def _ingredients(store: Store, rels: list[str]):
    from asymptote.soups import Checkpoint

    return [Checkpoint.from_folder(store.localize(rel), name=rel) for rel in rels]


def _score_ingredients(
    scorer, model, ings, kind: Kind = "ingredient"
) -> tuple[list[SoupEntry], list[Scores]]:
    entries, scores = [], []
    for ing in ings:
        model.load_state_dict(ing.load())
        scores.append(Scores.of(scorer, model))
        entries.append(SoupEntry(name=ing.name, kind=kind, rel=ing.name, **scores[-1].fields()))
    return entries, scores


def _pantry(kitchen: Kitchen, scorer, model, ings, scores, device):
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
    store: Store, kitchen: Kitchen, scorer, pantry, common: dict, out: str, best: Scores
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
    store: Store, kitchen: Kitchen, scorer, pantry, common: dict, out: str, best: Scores
) -> list[SoupEntry]:
    """Each merge at its best held-out scale; SLERP joins the two best ingredients by held-out loss."""
    from asymptote.soups import Checkpoint, best_scale_merge

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


def segment(scorer, model, start, end, points: int, name: str, full: bool = True) -> Segment:
    """Losses along start -> end (Checkpoints); held-out only unless `full` (test and OOD for the plot)."""
    from asymptote.soups import along_segment, basin_check

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


def _segments(store: Store, kitchen: Kitchen, scorer, pantry, entries: list[SoupEntry]) -> list[Segment]:
    """The two best ingredients (held-out) joined, and the base joined to the greedy (else first) soup."""
    from asymptote.soups import Checkpoint

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


def _cook_remote(store: Store, kitchen: Kitchen, out: str, use_gpu: bool) -> dict:
    from asymptote.model import Decoder

    device = _device(use_gpu)
    cfg = model_shape(store, kitchen.ingredients + ([kitchen.base] if kitchen.base else []))
    scorer = make_scorer(store, kitchen.data, kitchen.soups, cfg.block_size, device, kitchen.ood_data)
    model = Decoder(cfg).to(device).eval()
    return cook_with(store, kitchen, scorer, model, out, device).model_dump()


def cook_with(store: Store, kitchen: Kitchen, scorer, model, out: str, device=None) -> Cooking:
    """Score the ingredients, make every soup and merge, and the segments. Every choice reads
    scorer.held only; the best single is the ingredient with the lowest held-out loss."""
    import torch

    ings = _ingredients(store, kitchen.ingredients)
    entries, scores = _score_ingredients(scorer, model, ings)
    held = [s.heldout for s in scores]
    best = scores[int(np.argmin(held))]
    pantry = _pantry(kitchen, scorer, model, ings, held, device or torch.device("cpu"))
    common = {"model": model.cfg.model_dump(), "data": kitchen.data, "split": _split_meta(kitchen.soups)}
    entries += _cook_soups(store, kitchen, scorer, pantry, common, out, best)
    if kitchen.merges.methods and kitchen.base:
        entries += _cook_merges(store, kitchen, scorer, pantry, common, out, best)
    return Cooking(entries=entries, segments=_segments(store, kitchen, scorer, pantry, entries))


@task(name="cook-soups", retries=1, retry_delay_seconds=5)
def cook_task(store: Store, kitchen: Kitchen, use_gpu: bool | str, key: str) -> Cooking:
    ray_ready()
    use_gpu = resolve_gpu(use_gpu)
    import ray

    fn = remote(_cook_remote).options(num_cpus=1, num_gpus=1 if use_gpu else 0)
    return Cooking.model_validate(ray.get(fn.remote(store, kitchen, layout("soup", key=key), use_gpu)))


def cook(store: Store, kitchen: Kitchen, use_gpu: bool | str = False, refresh: bool = False) -> Cooking:
    """Score the ingredients and make every soup and merge; cached by the kitchen's key."""
    if kitchen.merges.methods and not kitchen.base:
        raise ValueError(
            "merges are relative to a base: set base.run (the checkpoint the ingredients were "
            "fine-tuned from) or merges.methods=[]"
        )
    return cached(cook_task, store, refresh)(store, kitchen, use_gpu, key=kitchen.key(store))


# ----------------------------------------------------------------------------- the basin probe


def _probe_remote(store: Store, a: str, b: str, data: str, options: SoupOptions, use_gpu: bool) -> dict:
    from asymptote.model import Decoder

    device = _device(use_gpu)
    cfg = model_shape(store, [a, b])
    scorer = make_scorer(store, data, options, cfg.block_size, device)
    model = Decoder(cfg).to(device).eval()
    ends = _ingredients(store, [a, b])
    return segment(scorer, model, ends[0], ends[1], options.curve_points, "probe", full=False).model_dump()


@task(name="basin-probe", retries=1, retry_delay_seconds=5)
def probe_task(
    store: Store, a: str, b: str, data: str, options: SoupOptions, use_gpu: bool | str, key: str
) -> Segment:
    ray_ready()
    use_gpu = resolve_gpu(use_gpu)
    import ray

    fn = remote(_probe_remote).options(num_cpus=1, num_gpus=1 if use_gpu else 0)
    return Segment.model_validate(ray.get(fn.remote(store, a, b, data, options, use_gpu)))


def probe_segment(
    store: Store,
    a: str,
    b: str,
    data: str,
    options: SoupOptions,
    use_gpu: bool | str = False,
    refresh: bool = False,
) -> Segment:
    """Held-out loss along the segment between two fine-tunes (and its basin_check); cached."""
    key = step_key(
        __name__,
        ends=[a, b],
        digests=[store.manifest(r).digest for r in (a, b)],
        data=data,
        split=_split_meta(options),
        eval_windows=options.eval_windows,
        points=options.curve_points,
        what="basin-probe",
    )
    return cached(probe_task, store, refresh)(store, a, b, data, options, use_gpu, key=key)


# ----------------------------------------------------------------------------- independent members


def _split_meta(options: SoupOptions) -> dict[str, Any]:
    return {"heldout_fraction": options.heldout_fraction, "chunk_windows": options.split_chunk_windows}


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
    scorer = make_scorer(store, data, options, cfg.block_size, device)
    model = Decoder(cfg).to(device).eval()
    ings = _ingredients(store, members)
    entries = _score_ingredients(scorer, model, ings, kind="member")[0]
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
    import ray

    fn = remote(_independent_remote).options(num_cpus=1, num_gpus=1 if use_gpu else 0)
    rows = ray.get(fn.remote(store, members, data, options, layout("soup", key=key), use_gpu))
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
    fig.tight_layout()  # labels are placed in final pixel positions, so after the layout
    for ax, group in zip(axes[0], panels, strict=False):
        _labels(ax, group)
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
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _labels(ax, entries: list[SoupEntry]) -> None:
    from asymptote.plots import place_labels

    place_labels(ax, [(e.heldout, e.test, e.name) for e in entries if e.kind not in ("ingredient", "member")])
