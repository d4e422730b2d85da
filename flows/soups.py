"""Model soups: average fine-tunes of one base, merge them, and average independently trained models.

1. Data: the target corpus is tokenised once; its validation split (the last val_fraction of the
   text) is cut into chunks of soups.split_chunk_windows windows dealt alternately to held-out and
   test (asymptote.soups.heldout_test_split). Fine-tunes train on the train split; every choice
   (greedy order and acceptance, learned weights, MWA losses, merge scales) is made on held-out;
   test is only reported. (A fine-tune's own summary val_loss, logged during training, covers the
   whole validation split and is never used to choose.)
2. Base: a checkpoint already in the store (base.run), or a run trained here on base.data (another
   part of the text) or, by default, on the target itself.
3. Sweep: M fine-tunes from the base with lr, weight decay, length and seed drawn from a Ray Tune
   search space (seeded), each a TrainJob with init_from = the base: content-addressed, never trained
   twice. With sweep.basin.rungs > 0 the learning rates are found by measurement first: a ladder
   down from the base's own peak, two probe fine-tunes per rung, held-out loss along the line between
   them; the first rung whose midpoint beats both ends sets the top of the sweep (the pair joins it).
   Lengths may be fractions of the base's own steps (sweep.steps_fraction). Or skip the sweep and
   soup any checkpoints of the store (`ingredients`).
4. Soups (uniform, greedy, learned, MWA) and merges (task arithmetic, TIES, DARE, SLERP), each
   committed as soups/<key>/<name> with a manifest naming ingredients and weights, each scored on
   test and on the base corpus's test split (out of distribution) with a paired-bootstrap interval
   of its gain over the best single fine-tune (chosen on held-out).
5. Independent members trained from scratch (different seeds): naive average vs weight-matched
   average, against their ensemble.
6. A report: gains with intervals and verdicts (p >= 0.95 only), the probe, a held-out vs test plot
   of every model and the loss along the segments (the two best ingredients; the base to the soup).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import methods, preflight
from asymptote.config import ModelConfig
from asymptote.infra.cluster import compute_session
from asymptote.job_spec import TrainJob, make_job
from asymptote.refs import DataRef, RunRef
from asymptote.shards import corpus_rel
from asymptote.soups_config import SoupStudyConfig, SweepConfig
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import prepare_data, submit_train
from asymptote.tasks.reports import Report, md_table, method_report, publish_report, shift_headings
from asymptote.tasks.soups import (
    Kitchen,
    Segment,
    SoupEntry,
    cook,
    independent_averages,
    plot_heldout_vs_test,
    probe_segment,
    run_sweep,
    sample_trials,
)

STEPS = methods.METHODS["soups"].steps


class FineTune(BaseModel):
    run: RunRef
    hparams: dict[str, Any]
    """Drawn lr, weight_decay, epochs (or max_steps), seed."""


class Rung(BaseModel):
    """One rung of the basin probe: two fine-tunes at one learning rate and the line between them."""

    lr: float
    lr_fraction: float
    """lr as a fraction of the base's peak learning rate."""
    runs: list[str]
    segment: Segment


class SoupStudyResult(BaseModel):
    """What the soup flow returns: references into the store and every loss."""

    flow_run_id: str | None
    data: DataRef
    base: str | None
    """Store-relative path of the base checkpoint."""
    finetunes: list[FineTune]
    entries: list[SoupEntry]
    """Every ingredient, soup, merge, member, average and the ensemble, with held-out and test losses."""
    report_uri: str
    segments: list[Segment] = []
    """Loss along the line between the two best ingredients, and between the base and the soup."""
    probe: list[Rung] = []
    """The basin probe's rungs, in the order probed; the last is the one accepted."""

    def best_single(self) -> SoupEntry | None:
        """The fine-tune with the lowest held-out loss (never chosen on test)."""
        singles = [e for e in self.entries if e.kind == "ingredient"]
        return min(singles, key=lambda e: e.heldout) if singles else None

    def test_loss(self) -> dict[str, float]:
        """Headline test losses: the best single (chosen on held-out), each soup and merge, the averages."""
        out = {}
        singles = [e for e in self.entries if e.kind == "ingredient"]
        if singles:
            out["best_single"] = self.best_single().test
            out["oracle_single"] = min(e.test for e in singles)
        out |= {
            e.name: e.test
            for e in self.entries
            if e.kind in ("soup", "merge", "independent-average", "ensemble")
        }
        members = [e.test for e in self.entries if e.kind == "member"]
        if members:
            out["independent_members"] = sum(members) / len(members)
        return out

    def ood_test_loss(self) -> dict[str, float]:
        """Losses on the pretraining corpus's test split: the best single and every soup and merge."""
        best = self.best_single()
        out = {"best_single": best.ood_test} if best and best.ood_test is not None else {}
        return out | {
            e.name: e.ood_test for e in self.entries if e.kind in ("soup", "merge") and e.ood_test is not None
        }

    def gains(self, ood: bool = False) -> dict[str, dict[str, Any]]:
        """Per soup and merge: gain over the best single (value, ci, p, verdict), on test or OOD test."""
        return {
            e.name: (e.ood_gain if ood else e.gain)
            for e in self.entries
            if e.kind in ("soup", "merge") and (e.ood_gain if ood else e.gain)
        }


# ----------------------------------------------------------------------------- steps


def sweep_space(sweep: SweepConfig, lr: list[float], lengths: tuple[str, list[float]]) -> dict[str, Any]:
    """The sweep's Ray Tune search space: lr and weight decay log-uniform, length and seed drawn."""
    from ray import tune

    wd = sweep.weight_decay
    return {
        "lr": tune.loguniform(lr[0], lr[1]) if lr[0] < lr[1] else lr[0],
        "weight_decay": tune.loguniform(wd[0], wd[1]) if wd[0] < wd[1] else wd[0],
        lengths[0]: tune.choice(lengths[1]),
        "seed": tune.randint(0, 2**16),
    }


def submit_base(config: SoupStudyConfig, store: Store, target: DataRef, hub: str | None, refresh: bool):
    """(the base, its corpus): base.run as is (corpus unknown), or a run trained here (submitted, so
    members train beside it) with the data artifact it was trained on."""
    b = config.base
    if b.run:
        return store.model_ref(b.run, "base.run"), None
    data = b.data or config.data
    ref = target if b.data is None else prepare_data(data, store)
    job = make_job(
        name=f"{config.name}-base",
        model=b.model,
        data=data,
        train=b.train,
        data_artifact=ref.rel,
        compute=config.compute,
        store=store.cfg,
        progress_hub=hub,
    )
    return submit_train(job, refresh), ref


def finetune_job(
    config: SoupStudyConfig, store: Store, base: str, target: DataRef, hub: str | None, name: str, hp: dict
) -> TrainJob:
    """One fine-tune of the base with the hyperparameters hp (lr, weight_decay, epochs or max_steps, seed)."""
    lengths = {k: hp[k] for k in ("epochs", "max_steps") if k in hp}
    tr = config.sweep.train.model_copy(
        update={
            "lr": hp["lr"],
            "weight_decay": hp["weight_decay"],
            **lengths,
            "train_seed": hp["seed"],
            "data_seed": hp["seed"],
        }
    )
    return make_job(
        name=name,
        model=ModelConfig.model_validate(store.manifest(base).meta["model"]),
        data=config.data,
        train=tr,
        data_artifact=target.rel,
        init_from=base,
        compute=config.compute,
        store=store.cfg,
        progress_hub=hub,
    )


def base_schedule(store: Store, base: str) -> tuple[float | None, int | None]:
    """The base's peak learning rate and optimiser steps, from its run manifest (None if not a run)."""
    meta = store.manifest(base).meta
    return meta.get("config", {}).get("train", {}).get("lr"), meta.get("summary", {}).get("steps")


def member_jobs(
    config: SoupStudyConfig, store: Store, target: DataRef, shape: ModelConfig, hub: str | None
) -> list[TrainJob]:
    t = config.independent.train
    return [
        make_job(
            name=f"{config.name}-member-{i}",
            model=shape,
            data=config.data,
            train=t.model_copy(update={"train_seed": t.train_seed + i, "data_seed": t.data_seed + i}),
            data_artifact=target.rel,
            compute=config.compute,
            store=store.cfg,
            progress_hub=hub,
        )
        for i in range(config.independent.members)
    ]


# ----------------------------------------------------------------------------- the flow


def start_members(
    config: SoupStudyConfig, store: Store, target: DataRef, given: list[str], hub: str | None, refresh: bool
) -> list:
    """Submit the independent members (futures), so they train while the base and the fine-tunes do.

    Their shape is the base's: base.model when it is trained here, else that of base.run or of the
    first given ingredient. Members given as runs (independent.runs) are returned as they are."""
    if config.independent.runs:
        return [store.model_ref(r, f"independent.runs[{i}]") for i, r in enumerate(config.independent.runs)]
    if config.base.run:
        shape_of = store.model_ref(config.base.run, "base.run")
    elif given:
        shape_of = given[0]
    else:
        return [submit_train(j, refresh) for j in member_jobs(config, store, target, config.base.model, hub)]
    shape = ModelConfig.model_validate(store.manifest(shape_of).meta["model"])
    return [submit_train(j, refresh) for j in member_jobs(config, store, target, shape, hub)]


def probe_basin(
    config: SoupStudyConfig, store: Store, base: str, target: DataRef, hub, refresh: bool, gpu: bool
) -> tuple[list[Rung], list[FineTune]]:
    """Descend the learning-rate ladder from the base's peak until a probe pair soups (held-out only)."""
    from asymptote.soups import choose_rung

    s, (base_lr, base_steps) = config.sweep, base_schedule(store, base)
    if base_lr is None:
        raise ValueError(
            f"sweep.basin needs a base run whose config records its learning rate; {base} has none"
        )
    key, lengths = s.lengths(base_steps)
    seeds = np.random.RandomState(s.seed + 1).randint(0, 2**16, 2).tolist()
    rungs, pairs = [], []
    for i in range(s.basin.rungs):
        frac = s.basin.factor**-i
        hps = [
            {
                "lr": base_lr * frac,
                "weight_decay": float(np.sqrt(np.prod(s.weight_decay))),
                key: max(lengths),
                "seed": sd,
            }
            for sd in seeds
        ]
        jobs = [
            finetune_job(config, store, base, target, hub, f"{config.name}-probe-{i}-{j}", hp)
            for j, hp in enumerate(hps)
        ]
        runs = [f.result() for f in [submit_train(j, refresh) for j in jobs]]
        seg = probe_segment(store, runs[0].rel, runs[1].rel, target.rel, config.soups, gpu, refresh)
        rungs.append(Rung(lr=base_lr * frac, lr_fraction=frac, runs=[r.rel for r in runs], segment=seg))
        pairs.append([FineTune(run=r, hparams=hp) for r, hp in zip(runs, hps, strict=True)])
        if seg.check["soups"]:
            break
    return rungs, pairs[choose_rung([r.segment.check for r in rungs])]


def sweep(
    config: SoupStudyConfig, store: Store, base: str, target: DataRef, hub, refresh: bool, gpu: bool = False
) -> tuple[list[FineTune], list[Rung]]:
    """The fine-tunes: draws from the configured space, or the basin probe's pair plus draws around it."""
    s = config.sweep
    lengths = s.lengths(base_schedule(store, base)[1])
    rungs, pair, lr = [], [], s.lr
    if s.basin.rungs:
        rungs, pair = probe_basin(config, store, base, target, hub, refresh, gpu)
        lr = [rungs[-1].lr / s.basin.lr_span, rungs[-1].lr]
    draws = sample_trials(sweep_space(s, lr, lengths), s.n_models - len(pair), s.seed)
    jobs = [
        finetune_job(config, store, base, target, hub, f"{config.name}-ft-{i}", hp)
        for i, hp in enumerate(draws)
    ]
    runs = run_sweep(jobs, s.engine, refresh) if jobs else []
    return pair + [FineTune(run=r, hparams=hp) for r, hp in zip(runs, draws, strict=True)], rungs


def averages(
    config: SoupStudyConfig, store: Store, futures: list, target: DataRef, gpu: bool, refresh: bool
) -> list[SoupEntry]:
    if not futures:
        return []
    members = [f if isinstance(f, str) else f.result().rel for f in futures]
    return independent_averages(store, members, target.rel, config.soups, gpu, refresh)


@flow(name="soups", log_prints=True)
def soup_study(config: SoupStudyConfig | None = None, recompute: list[str] | None = None) -> SoupStudyResult:
    """Data -> base -> sweep (or given checkpoints) -> soups and merges -> independent averages -> report."""
    config = config or SoupStudyConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    store, again = Store(config.store), lambda step: step in recompute
    with compute_session(config.compute.ray_address) as hub:
        gpu = config.compute.use_gpu  # "auto" is resolved by the tasks that run (tasks.soups.resolve_gpu)
        target = prepare_data(config.data, store, refresh=again("data"))
        given = [store.model_ref(r, f"ingredients[{i}]") for i, r in enumerate(config.ingredients)]
        pending, corpus = (
            submit_base(config, store, target, hub, again("base"))
            if config.base.run or not given
            else (None, None)
        )
        futures = start_members(
            config, store, target, given, hub, again("independent")
        )  # queued after the base
        base = pending.result().rel if hasattr(pending, "result") else pending
        finetunes, probe = ([], []) if given else sweep(config, store, base, target, hub, again("sweep"), gpu)
        kitchen = Kitchen(
            ingredients=given or [f.run.rel for f in finetunes],
            data=target.rel,
            soups=config.soups,
            base=base,
            merges=config.merges,
            ood_data=corpus.rel if corpus is not None and corpus.rel != target.rel else None,
        )
        cooking = cook(store, kitchen, gpu, refresh=again("soups"))
        entries = cooking.entries + averages(config, store, futures, target, gpu, again("independent"))
    result = SoupStudyResult(
        flow_run_id=flow_run.id,
        data=target,
        base=base,
        finetunes=finetunes,
        entries=entries,
        report_uri="",
        segments=cooking.segments,
        probe=probe,
    )
    rendered = method_report("soups", config, result, store)
    key = kitchen.key(store)
    return result.model_copy(
        update={"report_uri": publish_report(store, "soups", key, rendered.markdown, rendered.files)}
    )


# ----------------------------------------------------------------------------- report


def _rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    names = _short_names(result)
    rows = []
    for e in result.entries:
        used = (
            [f"{names.get(k, k)}:{w:.2f}" for k, w in e.weights.items() if w > 0]
            if e.kind != "ingredient"
            else []
        )
        extra = f"scale {e.info['scale']}" if "scale" in e.info else ""
        rows.append(
            {
                "model": names.get(e.name, e.name),
                "kind": e.kind,
                "held-out": e.heldout,
                "test": e.test,
                "OOD test": e.ood_test if e.ood_test is not None else "",
                "weights": " ".join(used) if len(used) <= 8 else f"{len(used)} ingredients",
                "notes": extra,
            }
        )
    return rows


def _short_names(result: SoupStudyResult) -> dict[str, str]:
    return {ft.run.rel: f"ft-{i}" for i, ft in enumerate(result.finetunes)}


def _gain_rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    """Per soup and merge: its test (and OOD) gain over the best single, interval, p and verdict."""

    def cell(g):
        return (
            f"{g['value']:+.4f} [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}] p={g['p']:.3f} {g['verdict']}"
            if g
            else ""
        )

    return [
        {"model": e.name, "kind": e.kind, "test gain": cell(e.gain), "OOD test gain": cell(e.ood_gain)}
        for e in result.entries
        if e.kind in ("soup", "merge")
    ]


def _probe_rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    return [
        {
            "rung": i,
            "lr": f"{r.lr:.2e}",
            "of base lr": f"{r.lr_fraction:.3g}",
            "held-out along the line": " ".join(f"{p['heldout']:.4f}" for p in r.segment.points),
            "barrier": f"{r.segment.check['barrier']:+.4f}",
            "midpoint gain": f"{r.segment.check['midpoint_gain']:+.4f}",
            "soups": r.segment.check["soups"],
        }
        for i, r in enumerate(result.probe)
    ]


def _finetune_rows(result: SoupStudyResult) -> list[dict[str, Any]]:
    return [
        {
            "fine-tune": f"ft-{i}",
            "lr": f"{ft.hparams['lr']:.2e}",
            "weight_decay": f"{ft.hparams['weight_decay']:.3f}",
            "length": ft.hparams.get("max_steps", ft.hparams.get("epochs")),
            "seed": ft.hparams["seed"],
            "steps": ft.run.summary.get("steps"),
            "run": f"`{ft.run.rel}`",
        }
        for i, ft in enumerate(result.finetunes)
    ]


def _figures(config: SoupStudyConfig, result: SoupStudyResult, plot_name: str) -> dict[str, bytes]:
    from asymptote.plots import plot_segments

    segments_png = plot_name.replace("heldout-vs-test", "interpolation")
    with tempfile.TemporaryDirectory() as tmp:
        plot_heldout_vs_test(result.entries, Path(tmp) / plot_name, title=f"{config.name}: held-out vs test")
        files = {plot_name: (Path(tmp) / plot_name).read_bytes()}
        if result.segments:
            plot_segments(
                [g.model_dump() for g in result.segments], Path(tmp) / segments_png, f"{config.name}: "
            )
            files[segments_png] = (Path(tmp) / segments_png).read_bytes()
    return files


def _verdict(result: SoupStudyResult) -> str:
    t, best = result.test_loss(), result.best_single()
    if "greedy" not in t or best is None:
        return ""
    greedy = next(e for e in result.entries if e.name == "greedy")
    kept = sum(w > 0 for w in greedy.weights.values())
    g = greedy.gain
    return (
        f"\nGreedy soup ({kept} ingredient(s)) vs the best single fine-tune (chosen on held-out), on test: "
        f"{t['greedy']:.4f} vs {t['best_single']:.4f}; gain {g['value']:+.4f}, 95% interval "
        f"[{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}] over test windows, p(gain > 0) = {g['p']:.3f}: "
        f"{g['verdict']} (a verdict only where p >= 0.95 either way).\n"
    )


def soup_report(
    config: SoupStudyConfig, result: SoupStudyResult, store: Store, plot_name: str = "heldout-vs-test.png"
) -> tuple[str, dict[str, bytes]]:
    files = _figures(config, result, plot_name)
    sweep = f"\n### Fine-tunes\n\n{md_table(_finetune_rows(result))}\n" if result.finetunes else ""
    probe = (
        "\n### Basin probe\n\nTwo fine-tunes per rung of a learning-rate ladder down from the base's peak; "
        "held-out loss at evenly spaced points on the line between them. The first rung whose midpoint beats "
        "both ends sets the sweep's top learning rate.\n\n"
        f"{md_table(_probe_rows(result))}\n"
        if result.probe
        else ""
    )
    base = f"`{store.uri(result.base)}`" if result.base else "none (given checkpoints, no merges)"
    curves = [n for n in files if n != plot_name]
    markdown = (
        f"# Model soups: {config.name}\n\n"
        f"Target `{result.data.uri}`; its validation split is cut into chunks of "
        f"{config.soups.split_chunk_windows} windows dealt to held-out ({config.soups.heldout_fraction:.0%}, "
        "every choice) and test (the rest, reported only). OOD test: the test split of the base's "
        f"pretraining corpus. Base: {base}.\n{_verdict(result)}\n"
        f"{md_table(_rows(result))}\n\n### Gains over the best single fine-tune\n\n"
        "Paired bootstrap over test windows (resampled with replacement, "
        f"{config.soups.bootstrap} times): mean gain, 95% interval, p = share of resamples with gain > 0.\n\n"
        f"{md_table(_gain_rows(result))}\n{probe}{sweep}\n"
        "- MWA weights: w_k proportional to (L_k / L_min)^(-p) on held-out loss, "
        f"p = {config.soups.mwa_penalty}.\n- Merges add scale x the merged task vector to the base; the "
        f"scale is chosen on held-out from {config.merges.scales}; SLERP joins the two best ingredients.\n"
        "- Independent members: trained from scratch with different seeds; aligned_avg permutes each onto "
        "the first by weight matching (residual stream, heads, SwiGLU units) before averaging; the "
        "ensemble averages their logits.\n"
        f"- Soups are committed under `{store.uri('soups')}` with manifests naming ingredients and "
        "weights.\n\n"
        f"![held-out vs test]({plot_name})\n"
        + "".join(f"\n![loss along the segments]({c})\n" for c in curves)
    )
    return markdown, files


def report(
    config: SoupStudyConfig, result: SoupStudyResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    markdown, files = soup_report(config, result, store, plot_name=f"{prefix}heldout-vs-test.png")
    return Report(shift_headings(markdown, level - 1), files, summary(result)[0])


def summary(result: SoupStudyResult) -> tuple[dict, str]:
    losses = result.test_loss()
    figures = {"test_loss": losses, "ood_test_loss": result.ood_test_loss(), "gain_over_best": result.gains()}
    return figures, "test loss: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())


def inputs(config: SoupStudyConfig, earlier: dict[str, BaseModel]) -> SoupStudyConfig:
    """In the main job, the fine-tunes start from the distillation step's single model when the soups
    leave their base unset and that model has the base's shape and was trained on the soups' corpus."""
    distilled = earlier.get("distill")
    if distilled is None or config.base.run or config.base.data is not None:
        return config
    store = Store(config.store)
    meta = store.manifest(distilled.teachers.single).meta
    corpus = corpus_rel(config.data, store.options)
    if meta["model"] != config.base.model.model_dump() or meta["config"]["data_artifact"] != corpus:
        return config
    return config.model_copy(
        update={"base": config.base.model_copy(update={"run": distilled.teachers.single})}
    )
