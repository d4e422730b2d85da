"""Benchmark: nanoGPT's baby loss from a fraction of its training text, and how many times that text
the standard recipe would need for the same loss (issue 39).

    nice -n 10 python bench/data_efficiency.py --data ../shared/data/tinyshakespeare.txt --fraction 0.25
    python bench/data_efficiency.py --data builtin:python-docs --fraction 0.02 --smoke

The split (asymptote.data_efficiency): nanoGPT's first 90% of the text is training text, its last 10%
the reported split (`nanogpt_val`). Only the first --fraction of the training text is kept, and the
last `split.val_share` of the kept text is the validation slice that every choice reads. The kept text
and the reported text are written as one derived file under the temp dir, with data fractions that
make the flows' own positional split land exactly there (their test split is the reported split), so
every flow runs unchanged and no choice ever reads the reported split.

What trains, all from bench/protocols/data_efficiency.json (fixed before the run):
1. The standard law: the standard recipe (nanoGPT's optimiser, weight decay 0.1) at each of
   `law.fractions`, its learning rate and passes (one or two) chosen over `law.lr` x `law.epochs` on
   that fraction's validation slice at seed 0, then retrained at the choice for the other seeds.
2. `standard`: the same model with nanoGPT's recipe and budget (`standard.train`) on the kept text.
   `beats_nanogpt` compares every model with `reference_loss`, nanoGPT's own script on all of the
   training text. On a corpus where that was never measured, `--set reference_loss=null` measures
   the reference in the same run: the standard arm on all of the training text (`reference_arm`, its
   seeds), and a model beats it when the paired draws' upper end of (model - reference) is below 0.
3. `single`, `ensemble`, `student`: the distillation flow (flows/distillation.py) on the kept text: the
   regularized single model certified on validation, K members at the paper's member recipe, and one
   student per method of a member's size: sequence-level (the paper's, the headline), token_kl and
   combined (this project's extensions, reported under `extensions`). The recipe flow runs these
   stages only behind a multi-size scaling study and before soups, neither of which these figures use
   (it has no option to skip them); the distillation flow alone runs exactly these stages at one size.
The law's runs and the standard arm are single training runs, submitted together through the cached
train step the flows use (tasks.scaling.train_all; a job keyed by asymptote.job_spec.make_job as the
pretrain flow keys one), so two train at once where one pretrain call per run would train one.

Every figure is a test loss on the reported split from ONE hierarchical bootstrap over all arms (seeds,
then the split's windows, which every arm shares: asymptote.stats); the ensemble's members enter as
delete-one jackknife pseudo-seeds. L(D) = E + A D^-alpha is fitted to the law's points (seed-aware,
asymptote.fits) and each model's data_multiplier pairs the law's draws with its own.
Runs are cached in the store (--store): a stopped bench resumes (runs from their last checkpoint), and
another --fraction on the same store reuses the whole law (derived files are named by their content).

Progress on stderr; LAST one JSON line on stdout: fraction, unique_train_tokens, split, seeds, standard,
single, ensemble, student (each {estimate, ci}), extensions, beats_nanogpt, data_multiplier (per model
{estimate, ci, reachable, reason}), params, total_train_tokens (per model: tokens one trained model
processed; the ensemble: its K members), law (A, alpha, E, identified, reason, its points), validation
(the slice's tokens as cut and as the flows read them), protocol, commit, wall_s.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import emit, load_protocol, parser, protocol_fields, store_uri
from prefect import flow

from asymptote import stats
from asymptote.config import DataConfig, ModelConfig, StoreConfig, TrainConfig, build
from asymptote.data_efficiency import (
    REPORTED_SPLIT,
    Choice,
    KeptSplit,
    LossFigure,
    choose,
    data_multiplier,
    fit_law,
    keep_fraction,
    loss_figures,
    read_single_text,
)
from asymptote.distill_config import PAPER_METHOD, DistillConfig, DistillResult
from asymptote.distill_search import leave_one_out, member_pseudo_seeds
from asymptote.flows.distillation import distill
from asymptote.infra.cluster import compute_session
from asymptote.job_spec import TrainJob, make_job
from asymptote.recipes import apply_override
from asymptote.refs import DataRef, RunRef
from asymptote.store import Store
from asymptote.tasks.distill import test_eval
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.scaling import train_all

COMPUTE_NOTE = (
    "total_train_tokens: tokens one trained model processed (mean over its seeds); the ensemble: its K "
    "members together; a student: its own run, its teachers not counted (they are the ensemble); the "
    "searches and the law are not counted"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- protocol and data


def settings(proto: dict, smoke: bool, sets: list[str]) -> dict:
    """The protocol's fields with its own smoke overrides (--smoke) and any --set applied."""
    plan = copy.deepcopy({k: v for k, v in proto.items() if k != "smoke"})
    for assignment in (proto.get("smoke", []) if smoke else []) + list(sets):
        apply_override(plan, assignment)
    return plan


class Corpus:
    """One fraction's derived text, its data config and its tokenised artifact in the store."""

    def __init__(self, split: KeptSplit, store: Store):
        self.split = split
        self.data = DataConfig(source=str(split.write()), tokenizer="byte", **split.data_fields())
        self.ref: DataRef = prepare_data(self.data, store)
        self._check()

    def _check(self) -> None:
        """The flows' splits are the intended bytes: a wrong cut here would leak the reported split."""
        s, r = self.split.sizes(), self.ref
        if (r.n_train, r.n_val, r.n_test) != (s["train"], s["val"], s["reported"]):
            raise RuntimeError(f"the data step split {self.data.source} as {r}, not as cut: {s}")

    def steps(self, epochs: float, batch: int, block: int) -> int:
        """Optimiser steps of `epochs` passes (asymptote.data.steps_for, without importing torch)."""
        return max(1, round(epochs * (((self.ref.n_train - 1) // block) // batch)))


def corpora(text: str, plan: dict, fractions: list[float], store: Store) -> dict[float, Corpus]:
    s = plan["split"]
    cut = {f: keep_fraction(text, f, s["val_share"], s["reported_share"]) for f in sorted(set(fractions))}
    return {f: Corpus(split, store) for f, split in cut.items()}


# ----------------------------------------------------------------------------- runs


def job(plan: dict, store: Store, corpus: Corpus, train: dict, name: str) -> TrainJob:
    """One run of the protocol's model on a fraction's corpus (keyed as the pretrain flow keys it)."""
    return make_job(
        name=name,
        model=ModelConfig.model_validate(plan["model"]),
        data=corpus.data,
        train=TrainConfig.model_validate(plan["run"] | train),
        data_artifact=corpus.ref.rel,
        compute=plan["compute"],
        store=store.cfg,
    )


def law_job(plan: dict, store: Store, corpus: Corpus, lr: float, epochs: float, seed: int) -> TrainJob:
    """The standard recipe at (lr, epochs), warmup a share of its own steps, train and data seed `seed`."""
    law, block = plan["law"], ModelConfig.model_validate(plan["model"]).block_size
    steps = corpus.steps(epochs, law["train"]["batch_size"], block)
    train = law["train"] | {"lr": lr, "epochs": epochs, "train_seed": seed, "data_seed": seed}
    train["warmup_steps"] = max(1, round(plan["warmup_share"] * steps))
    name = f"law F={corpus.split.fraction:g} lr={lr:g} ep={epochs:g} seed {seed}"
    return job(plan, store, corpus, train, name)


def law_runs(plan: dict, store: Store, law: dict[float, Corpus], offset: int) -> dict[float, tuple]:
    """Per fraction: (the choice on validation, its run). The first seed searches the whole grid."""
    g = plan["law"]
    grid = {
        f: {(lr, ep): law_job(plan, store, c, lr, ep, offset) for lr in g["lr"] for ep in g["epochs"]}
        for f, c in law.items()
    }
    flat = [j for jobs in grid.values() for j in jobs.values()]
    log(f"law: {len(flat)} grid runs over fractions {list(law)}")
    done = dict(zip([j.key for j in flat], train_all(flat), strict=True))
    chosen = {f: choose({p: done[j.key].val_loss for p, j in jobs.items()}) for f, jobs in grid.items()}
    for f, c in chosen.items():
        log(
            f"law F={f:g}: lr {c.lr:g}, {c.epochs:g} pass(es), val {c.val_loss:.4f}; at edge {list(c.at_edge)}"
        )
    return {f: (c, done[grid[f][(c.lr, c.epochs)].key]) for f, c in chosen.items()}


def standard_jobs(plan: dict, store: Store, corpus: Corpus, seeds: list[int]) -> list[TrainJob]:
    train = plan["standard"]["train"]
    return [
        job(plan, store, corpus, train | {"train_seed": s, "data_seed": s}, f"standard seed {s}")
        for s in seeds
    ]


def replicas(
    plan: dict,
    store: Store,
    data: dict[float, Corpus],
    picked: dict,
    standard: list[TrainJob],
    seeds: list[int],
) -> tuple[dict[float, list[RunRef]], list[RunRef]]:
    """The law's choices at the other seeds and the standard arm, trained together."""
    rep = {
        f: [law_job(plan, store, data[f], c.lr, c.epochs, s) for s in seeds[1:]]
        for f, (c, _) in picked.items()
    }
    flat = [j for jobs in rep.values() for j in jobs] + standard
    refs = iter(train_all(flat))
    law_refs = {f: [picked[f][1], *(next(refs) for _ in jobs)] for f, jobs in rep.items()}
    return law_refs, [next(refs) for _ in standard]


def distill_config(plan: dict, corpus: Corpus, store: Store, offset: int) -> DistillConfig:
    """The distillation study on the kept text: the protocol's, its budget every training token."""
    d, block = copy.deepcopy(plan["distill"]), ModelConfig.model_validate(plan["model"]).block_size
    start = d["search"]["start"]["epochs"]
    warmup = max(1, round(plan["warmup_share"] * corpus.steps(start, d["train"]["batch_size"], block)))
    d["train"] = plan["run"] | d["train"] | {"warmup_steps": warmup}
    d["compute"] = plan["compute"] | d.get("compute", {})
    fields = d | {
        "name": f"data-efficiency-F{corpus.split.fraction:g}",
        "model": plan["model"],
        "data": corpus.data.model_dump(),
        "budget": corpus.ref.n_train,
        "seeds": plan["seeds"],
        "seed_offset": offset,
        "store": {"uri": store.uri()},
    }
    return build(DistillConfig, fields)


# ----------------------------------------------------------------------------- test windows


REFERENCE_ARM = "reference: standard arm on all of the text"


def law_arm(fraction: float) -> str:
    return f"law F={fraction:g}"


def windows(store: Store, runs: dict[str, tuple[list[str], str]], how: str) -> dict[str, list[np.ndarray]]:
    """Per arm (its runs, the data they trained on), each seed's loss on every window of the reported
    split: every fraction's test split is that same text. Cached evaluations, all submitted first."""
    futures = {arm: [test_eval(store, [r], rel, how) for r in rels] for arm, (rels, rel) in runs.items()}
    return {arm: [np.asarray(f.result()["windows"]) for f in fs] for arm, fs in futures.items()}


def ensemble_windows(store: Store, members: list[str], data_rel: str, how: str) -> list[np.ndarray]:
    """The ensemble as K jackknife pseudo-seeds (the distillation flow's own, cached evaluations)."""
    full = test_eval(store, members, data_rel, how)
    loo = [test_eval(store, g, data_rel, how) for g in leave_one_out(members)]
    return member_pseudo_seeds(
        np.asarray(full.result()["windows"]), [np.asarray(f.result()["windows"]) for f in loo]
    )


# ----------------------------------------------------------------------------- the result


def scored_runs(runs: dict, law_refs: dict, data: dict[float, Corpus], here: Corpus) -> dict[str, tuple]:
    """What to score on the reported split: every model but the ensemble, and the law's points."""
    out = {m: (rels, here.ref.rel) for m, rels in runs.items() if m != "ensemble"}
    return out | {law_arm(f): ([r.rel for r in refs], data[f].ref.rel) for f, refs in law_refs.items()}


def run_meta(store: Store, rels: list[str], what: str) -> list[float]:
    return [float(store.manifest(r).meta["summary"][what]) for r in rels]


def model_runs(standard: list[RunRef], res: DistillResult) -> dict[str, list[str]]:
    """Every reported model's runs: standard, single, ensemble (its members) and each student method."""
    return {
        "standard": [r.rel for r in standard],
        "single": res.teachers.seed_runs,
        "ensemble": res.teachers.members,
        **{m: s.seed_runs for m, s in res.students.items()},
    }


def compute_spent(store: Store, runs: dict[str, list[str]]) -> tuple[dict[str, int], dict[str, int]]:
    """(params, training tokens of one model) per model; the ensemble holds and costs all K members."""
    params, tokens = {}, {}
    for model, rels in runs.items():
        p, t = run_meta(store, rels, "params")[0], run_meta(store, rels, "tokens")
        k = len(rels) if model == "ensemble" else 1
        params[model], tokens[model] = int(p * k), int(sum(t) if model == "ensemble" else np.mean(t))
    return params, tokens


def choices(res: DistillResult) -> dict[str, Any]:
    """What the distillation study chose on validation, and where a choice sits on its grid's edge."""
    t = res.teachers
    single = {
        "point": t.single_point,
        "certified": t.certified,
        "at_edge": t.at_edge,
        "runs": t.search_points,
    }
    students = {
        m: {"point": s.point, "certified": s.certified, "at_edge": s.at_edge, "runs": s.points}
        for m, s in res.students.items()
    }
    return {"single": single, **students}


def headline(models: dict[str, Any], paper: str) -> dict[str, Any]:
    """standard, single, ensemble and `student` (the paper's method); the extensions beside them."""
    out = {k: models[k] for k in ("standard", "single", "ensemble")} | {"student": models[paper]}
    return out | {"extensions": {m: v for m, v in models.items() if m not in out and m != paper}}


def law_point(fraction: float, c: Choice, corpus: Corpus, loss: LossFigure, seeds: int) -> dict[str, Any]:
    """One point of the law: its fraction, tokens (training, validation), choice and test loss."""
    at = {"lr": c.lr, "epochs": c.epochs, "val_loss": c.val_loss, "at_edge": list(c.at_edge)}
    sizes = {"tokens": corpus.ref.n_train, "val_tokens": corpus.ref.n_val}
    return {"fraction": fraction, **sizes, **at, "loss": loss.to_dict(), "seeds": seeds}


def analyse(plan: dict, corpus: Corpus, arms: dict, law: dict, runs: dict, store: Store, paper: str) -> dict:
    """Figures, the law, the multipliers, params and compute, in the bench's JSON shape."""
    a = plan["analysis"]
    figs, draws = loss_figures(arms, a["n_boot"], a["seed"], a["level"])
    beats, reference = reference_figures(plan, figs, draws, list(runs))
    names = [law_arm(f) for f in law]
    losses = [figs[n].estimate for n in names]
    tokens = [c.ref.n_train for _, _, c in law.values()]
    fitted = fit_law(tokens, losses, np.stack([draws[n] for n in names], 1), a["level"])
    used = corpus.ref.n_train
    mult = {m: data_multiplier(fitted, figs[m].estimate, draws[m], used).to_dict() for m in runs}
    params, spent = compute_spent(store, runs)
    points = [law_point(f, c, data, figs[law_arm(f)], len(refs)) for f, (c, refs, data) in law.items()]
    return {
        **headline({m: figs[m].to_dict() for m in runs}, paper),
        "paper_method": paper,
        "nanogpt_loss": reference["loss"],
        "reference": reference,
        "beats_nanogpt": headline(beats, paper),
        "data_multiplier": headline(mult, paper),
        "params": headline(params, paper),
        "total_train_tokens": headline(spent, paper),
        "compute_note": COMPUTE_NOTE,
        "seeds": headline({m: len(arms[m]) for m in runs}, paper),
        "resampled": stats.resampled({m: arms[m] for m in runs}),
        "law": fitted.to_dict() | {"points": points},
    }


def reference_figures(
    plan: dict, figs: dict[str, LossFigure], draws: dict[str, np.ndarray], models: list[str]
) -> tuple[dict[str, bool], dict[str, Any]]:
    """(whether each model beats the reference, the reference: its loss and where it comes from): the
    protocol's number, or the reference arm this run measured (then paired draws decide)."""
    given = plan["reference_loss"]
    if given is not None:
        beats = {m: figs[m].beats(given) for m in models}
        return beats, {"loss": given, "from": plan.get("reference", "the protocol's reference_loss")}
    hi = (1 + plan["analysis"]["level"]) / 2
    r = figs[REFERENCE_ARM]
    beats = {
        m: bool(figs[m].estimate < r.estimate and np.quantile(draws[m] - draws[REFERENCE_ARM], hi) < 0)
        for m in models
    }
    measured = {"loss": r.estimate, "ci": list(r.ci), "from": REFERENCE_ARM + " (measured in this run)"}
    return beats, measured


@dataclass
class Trained:
    """Everything the bench trained, by what it is for."""

    here: Corpus
    data: dict[float, Corpus]
    law: dict[float, tuple[Choice, list[RunRef]]]
    standard: list[RunRef]
    distilled: DistillResult
    how: str  # how an ensemble's members are combined (the distillation flow's own)
    reference: list[RunRef]  # the standard arm on all of the training text ([]: reference_loss given)


def train_everything(plan: dict, store: Store, text: str, fraction: float, offset: int) -> Trained:
    """The law (grid, then replicas with the standard arm), then the distillation study; cached runs."""
    seeds = [s + offset for s in range(plan["seeds"])]
    fractions = plan["law"]["fractions"]
    data = corpora(text, plan, [*fractions, fraction], store)
    here = data[fraction]
    log(f"F={fraction:g}: {here.split.sizes()} bytes (= tokens); store {store.uri()}")
    picked = law_runs(plan, store, {f: data[f] for f in fractions}, seeds[0])
    arm = standard_jobs(plan, store, here, seeds)
    measured = [] if plan["reference_loss"] is not None else standard_jobs(plan, store, full(data), seeds)
    law, trained = replicas(plan, store, data, picked, arm + measured, seeds)
    standard, reference = trained[: len(arm)], trained[len(arm) :]
    cfg = distill_config(plan, here, store, offset)
    log(f"distill: {cfg.ensemble.members} members, students {cfg.student.methods}, {cfg.seeds} seeds")
    distilled = distill(cfg)
    law = {f: (picked[f][0], refs) for f, refs in law.items()}
    return Trained(here, data, law, standard, distilled, cfg.sampling.combine, reference)


def full(data: dict[float, Corpus]) -> Corpus:
    """All of the training text (fraction 1), where a reference measured by this run trains."""
    if 1.0 not in data:
        raise ValueError(
            "reference_loss=null measures the reference on all of the text: law.fractions needs 1.0"
        )
    return data[1.0]


def score(store: Store, t: Trained) -> tuple[dict[str, list[str]], dict[str, list[np.ndarray]]]:
    """(each model's runs, each arm's per-seed window losses on the reported split)."""
    runs = model_runs(t.standard, t.distilled)
    arms = windows(
        store, scored_runs(runs, {f: refs for f, (_, refs) in t.law.items()}, t.data, t.here), t.how
    )
    arms["ensemble"] = ensemble_windows(store, runs["ensemble"], t.here.ref.rel, t.how)
    if t.reference:
        ref = {REFERENCE_ARM: ([r.rel for r in t.reference], full(t.data).ref.rel)}
        arms |= windows(store, ref, t.how)
    return runs, arms


@flow(name="data-efficiency-bench")
def bench_flow(plan: dict, source: str, store_uri: str, fraction: float, offset: int) -> dict[str, Any]:
    """Train and score everything in one Ray session, the cached steps submitted from inside this flow
    (the distillation flow is its subflow); returns the figures of the JSON line."""
    store = Store(StoreConfig(uri=store_uri))
    with compute_session():
        t = train_everything(plan, store, read_single_text(source), fraction, offset)
        runs, arms = score(store, t)
    s = t.here
    result = {
        "fraction": fraction,
        "unique_train_tokens": s.ref.n_train,
        "split": REPORTED_SPLIT,
        "validation": {"slice_tokens": len(s.split.val), "flows_val_tokens": s.ref.n_val},
        "reported_tokens": {"as_cut": len(s.split.reported), "flows_test_tokens": s.ref.n_test},
    }
    law = {f: (c, refs, t.data[f]) for f, (c, refs) in t.law.items()}
    result |= analyse(plan, s, arms, law, runs, store, PAPER_METHOD)
    return result | {"chosen": choices(t.distilled)}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0], protocol="data_efficiency")
    p.add_argument(
        "--fraction", type=float, required=True, help="share of nanoGPT's training text kept, in (0, 1]"
    )
    p.add_argument("--smoke", action="store_true", help="the protocol's smoke overrides: every budget tiny")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], help="override a protocol field, a.b=value"
    )
    args = p.parse_args(argv)
    proto = load_protocol(args.protocol)
    plan = settings(proto, args.smoke, args.sets)
    started = time.time()
    result = {"data": args.data} | bench_flow(
        plan, args.data, store_uri(args.store), args.fraction, args.seed_offset
    )
    result |= {"smoke": args.smoke, "changed": args.sets} | protocol_fields(proto, args.seed_offset)
    emit(
        result | {"wall_s": round(time.time() - started, 1)}, args.save, args.data, tag=f"F{args.fraction:g}"
    )


if __name__ == "__main__":
    main()
