"""Pre-training under infinite compute: the data-constrained recipe, ensembles and asymptotes.

Following Kim, Kotha, Liang and Hashimoto (2025): with the training tokens fixed at a budget D and
compute unconstrained, how low can validation loss go?

Selection reads the validation split only; every figure the study reports is on the test split.

1. Search. For each model size, certified coordinate descent over (learning rate, weight decay,
   epochs) finds the best setting of two recipes: *standard* (weight decay fixed, 0.1 in the paper)
   and *regularized* (weight decay tuned too). Sizes run smallest first; each starts at the previous
   size's optimum. Every point is a cached training run; a round's points train concurrently.
2. Replicas. Each certified optimum is re-trained with seeds 1..S (seed = init and data order) and
   evaluated on test; their spread is the noise every interval is drawn from.
   Parameter scaling: L(N) = A / N^alpha + E per recipe on the seed means; E is the recipe's asymptote.
3. Ensembles. At each size, K members train from the regularized optimum with epochs doubled and
   weight decay halved, member k with train_seed = data_seed = k. Members are evaluated streamed
   (one in memory at a time), averaging logits (the paper's choice) and probabilities. L(K) =
   A / K^beta + C per size, then C_N = A / N^alpha + E: the joint (N, K -> infinity) asymptote.
4. Data efficiency. The standard recipe is searched again at other budgets; its best loss L(D) =
   A / D^alpha + E is inverted to say how many times D it needs to reach each asymptote.
5. An epoch sweep at one size shows loss against epochs with weight decay fixed vs tuned.

Fits carry intervals bootstrapped from the seed noise, and each of the paper's claims gets an
estimate, a 95% interval, the probability p of the paper's direction and a verdict; the report
(markdown + PNGs) goes to the store and to Prefect.
Nothing from the paper is hard-coded: its grid is only the default of `SearchGrid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from asymptote import preflight
from asymptote.config import (
    DataConfig,
    ModelConfig,
    key_dict,
    stable_hash,
)
from asymptote.flops import param_count
from asymptote.flows.scaling_report import figures, render
from asymptote.infra.cluster import compute_session
from asymptote.job_spec import TrainJob, make_job
from asymptote.member_bootstrap import MAX_MULTISET_MEMBERS
from asymptote.refs import DataRef
from asymptote.scaling import MAX_SUBSET_MEMBERS, CoordinateDescent, member_train, point_job
from asymptote.scaling_analysis import Analysis, SizeData, StudyData
from asymptote.scaling_config import ScalingStudyConfig
from asymptote.search_space import RECIPES, Point, size_label
from asymptote.store import Store
from asymptote.tasks.ensembles import ensemble_eval, ensemble_multisets, ensemble_subsets
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.reports import Report, method_report, publish_report
from asymptote.tasks.scaling import Descent, analyse_study, descend, evaluate_all, train_all, tune_search

# ----------------------------------------------------------------------------- results


class SearchRow(BaseModel):
    size: str
    recipe: str
    budget: int
    best: dict[str, float]
    loss: float
    certified: bool
    points: int
    run: str


class ScalingStudyResult(BaseModel):
    """What `scaling_study` returns: the measured losses, the fits, the checks, where things are."""

    flow_run_id: str | None
    data: DataRef
    searches: list[SearchRow]
    study: StudyData
    analysis: Analysis
    runs: list[str]
    """Every run (runs/<key>) the study used."""
    report_uri: str
    members: dict[str, list[str]] = Field(default_factory=dict)
    """Per size label, its ensemble members (runs/<key>, member k at index k - 1): what later stages
    (distillation, soups) are handed."""
    figures: dict[str, Any] = Field(default_factory=dict)


# ----------------------------------------------------------------------------- the study


@dataclass
class Study:
    """The study's fixed context: builds every run it needs as a TrainJob."""

    config: ScalingStudyConfig
    store: Store
    data: DataRef
    hub: str | None

    def data_at(self, budget: int) -> DataConfig:
        return DataConfig.model_validate(self.config.data.model_dump() | {"max_train_tokens": budget})

    def volatile(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "compute": self.config.compute,
            "store": self.store.cfg,
            "progress_hub": self.hub,
        }

    def point_job(self, model: ModelConfig, budget: int, point: Point, seed: int | None = None) -> TrainJob:
        name = f"{size_label(model)} D={budget:,} {point.label()}" + (f" seed {seed}" if seed else "")
        return point_job(
            model, self.data_at(budget), self.data.rel, self.config.train, point, seed, **self.volatile(name)
        )

    def descent(self, model: ModelConfig, recipe: str, budget: int, start: Point) -> Descent:
        if recipe == "standard":
            start = start._replace(weight_decay=self.config.search.standard_weight_decay)
        cd = CoordinateDescent(
            self.config.search.grid, RECIPES[recipe], start, max_runs=self.config.search.max_runs
        )
        return Descent(
            name=f"{size_label(model)} {recipe} D={budget:,}",
            cd=cd,
            job=lambda p: self.point_job(model, budget, p),
        )

    def member_job(self, model: ModelConfig, best: Point, k: int) -> TrainJob:
        e = self.config.ensemble
        train = member_train(self.config.train, best, k, e.epoch_factor, e.weight_decay_factor)
        return make_job(
            model=model,
            data=self.data_at(self.config.tokens),
            data_artifact=self.data.rel,
            train=train,
            **self.volatile(f"{size_label(model)} member {k}"),
        )


def _budget_searches(config: ScalingStudyConfig, label: str) -> list[tuple[str, int]]:
    searches = [("standard", config.tokens), ("regularized", config.tokens)]
    if label in config.efficiency_labels:
        searches += [("standard", b) for b in config.efficiency.budgets]
    return searches


def search_all(study: Study) -> dict[tuple[str, str, int], Descent]:
    """Every size's descents, smallest size first; each size's descents advance together."""
    cfg = study.config
    s = cfg.search.start
    first = Point(s.lr, s.weight_decay, s.epochs)
    out: dict[tuple[str, str, int], Descent] = {}
    previous: dict[tuple[str, int], Point] = {}
    for model, label in zip(cfg.sizes, cfg.labels, strict=False):
        group = {}
        for recipe, budget in _budget_searches(cfg, label):
            start = previous.get((recipe, budget), first) if cfg.search.warm_start else first
            group[(label, recipe, budget)] = study.descent(model, recipe, budget, start)
        if cfg.search.engine == "tune":
            _prefill_from_tune(study, model, group)
        descend(list(group.values()))
        out |= group
        previous |= {(recipe, budget): d.best for (_, recipe, budget), d in group.items()}
    return out


def _prefill_from_tune(study: Study, model: ModelConfig, group: dict) -> None:
    """Run each search as a Ray Tune experiment; the flow's descent then certifies from its results."""
    from asymptote.tuning.search import SearchSpec

    cfg = study.config.search
    for (_label, recipe, budget), d in group.items():
        spec = SearchSpec(
            name=d.name,
            model=model,
            data=study.data_at(budget),
            data_artifact=study.data.rel,
            train=study.config.train,
            grid=cfg.grid,
            axes=RECIPES[recipe],
            start=d.cd.start,
            sampler=cfg.sampler,
            trials=cfg.trials,
            max_runs=cfg.max_runs,
            seed=cfg.seed,
            compute=study.config.compute,
            store=study.store.cfg,
            progress_hub=study.hub,
        )
        d.cd.results.update(tune_search(spec).losses())


def efficiency_choices(study: Study, descents: dict) -> dict[int, tuple[str, Point]]:
    """Per budget, the standard recipe's optimum over the efficiency sizes, chosen on validation."""
    cfg = study.config
    out: dict[int, tuple[str, Point, float]] = {}
    for (label, recipe, budget), d in descents.items():
        if recipe == "standard" and label in cfg.efficiency_labels:
            loss = _finite(d.cd.results[d.best])
            if budget not in out or loss < out[budget][2]:
                out[budget] = (label, d.best, loss)
    return {b: (label, p) for b, (label, p, _) in out.items()}


@dataclass
class Plan:
    """Every run measured after the search, as jobs in one list (trained together), and where each is."""

    jobs: list[TrainJob]
    replicas: dict[tuple[str, str, int], list[int]]
    """(size, recipe, budget) -> indices of its seed replicas in jobs."""
    sweep: dict[str, dict[float, int]]
    members: dict[str, list[int]]


def plan_runs(study: Study, descents: dict) -> Plan:
    """Seed replicas of each certified optimum (both recipes at every size, and the standard recipe's
    best size at every efficiency budget), the epoch sweep at one size and every size's members."""
    cfg, jobs = study.config, []

    def add(job: TrainJob) -> int:
        jobs.append(job)
        return len(jobs) - 1

    models = dict(zip(cfg.labels, cfg.sizes, strict=True))
    targets = {
        (lab, r, cfg.tokens): descents[(lab, r, cfg.tokens)].best for lab in cfg.labels for r in RECIPES
    }
    targets |= {(lab, "standard", b): p for b, (lab, p) in efficiency_choices(study, descents).items()}
    replicas = {
        (lab, r, b): [add(study.point_job(models[lab], b, p, seed)) for seed in range(1, cfg.seeds + 1)]
        for (lab, r, b), p in targets.items()
    }
    label = cfg.sweep_label
    sweep = {
        r: {
            e: add(
                study.point_job(
                    models[label], cfg.tokens, targets[(label, r, cfg.tokens)]._replace(epochs=e), 1
                )
            )
            for e in cfg.search.grid.epochs
        }
        for r in RECIPES
    }
    members = {
        lab: [
            add(study.member_job(models[lab], targets[(lab, "regularized", cfg.tokens)], k))
            for k in range(1, cfg.ensemble.members + 1)
        ]
        for lab in cfg.labels
    }
    return Plan(jobs, replicas, sweep, members)


def _member_sets(store: Store, runs: list[str], data_rel: str):
    """Every multiset's loss per test block (what the member bootstrap needs) for small K, else every
    subset's loss on the whole test split."""
    if len(runs) <= MAX_MULTISET_MEMBERS:
        return ensemble_multisets(store, runs, data_rel, split="test")
    return ensemble_subsets(store, runs, data_rel, split="test")


def _sets(future) -> dict:
    """subsets (and multisets, windows when evaluated) for SizeData."""
    if future is None:
        return {"subsets": {}}
    out = future.result()
    if "losses" not in out:
        return {"subsets": out}
    losses, windows = out["losses"], out["windows"]
    subsets = {k: float(np.average(v, weights=windows)) for k, v in losses.items() if _distinct(k)}
    return {"subsets": subsets, "multisets": losses, "windows": windows}


def _distinct(key: str) -> bool:
    parts = key.split(",")
    return len(set(parts)) == len(parts)


def _finite(loss: float) -> float:
    return loss if math.isfinite(loss) else math.inf  # a diverged run is worse than any finished one


def collect(study: Study, descents: dict, plan: Plan, tests: list[dict], ensembles: dict) -> StudyData:
    """The measured study: test losses per seed, per member, per ensemble size, per sweep point."""
    cfg = study.config

    def test(i: int) -> float:
        return float(tests[i].get("test_loss", math.nan))

    sizes = []
    for model, label in zip(cfg.sizes, cfg.labels, strict=True):
        d = {r: descents[(label, r, cfg.tokens)] for r in RECIPES}
        sizes.append(
            SizeData(
                label=label,
                params=param_count(model),
                standard=[test(i) for i in plan.replicas[(label, "standard", cfg.tokens)]],
                regularized=[test(i) for i in plan.replicas[(label, "regularized", cfg.tokens)]],
                regularized_wd=d["regularized"].best.weight_decay,
                standard_val=d["standard"].cd.results[d["standard"].best],
                regularized_val=d["regularized"].cd.results[d["regularized"].best],
                members=ensembles[label]["member"],
                ensemble={h: ensembles[label][h] for h in ("logits", "probs")},
                subsets=ensembles[label]["subsets"],
                multisets=ensembles[label].get("multisets", {}),
                windows=ensembles[label].get("windows", []),
            )
        )
    efficiency = {
        b: [test(i) for i in plan.replicas[(label, "standard", b)]]
        for b, (label, _) in efficiency_choices(study, descents).items()
    }
    sweep = {r: {e: test(i) for e, i in pts.items()} for r, pts in plan.sweep.items()}
    return StudyData(
        sizes=sizes,
        base_budget=cfg.tokens,
        sweep=sweep,
        efficiency=efficiency,
        standard_wd=cfg.search.standard_weight_decay,
    )


def search_rows(descents: dict) -> list[SearchRow]:
    return [
        SearchRow(
            size=label,
            recipe=recipe,
            budget=budget,
            best=d.best._asdict(),
            loss=d.cd.results[d.best],
            certified=d.cd.certified,
            points=len(d.cd.results),
            run=d.job(d.best).run_rel,
        )
        for (label, recipe, budget), d in descents.items()
    ]


@flow(name="scaling-study", log_prints=True)
def scaling_study(config: ScalingStudyConfig | None = None) -> ScalingStudyResult:
    """Search every size, ensemble it, fit the asymptotes, measure data efficiency, report."""
    config = config or ScalingStudyConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store)
        _check_budgets(config, data)
        study = Study(config, store, data, hub)
        descents = search_all(study)  # 1. selection: reads validation only
        plan = plan_runs(study, descents)
        refs = train_all(plan.jobs)  # 2. replicas, sweep and members, concurrently
        futures = {
            label: ensemble_eval(store, [refs[i].rel for i in idx], data.rel, split="test")
            for label, idx in plan.members.items()
        }
        subsets = {
            label: _member_sets(store, [refs[i].rel for i in idx], data.rel)
            for label, idx in plan.members.items()
            if len(idx) <= MAX_SUBSET_MEMBERS
        }
        tests = evaluate_all(store, refs, data.rel)  # 3. every reported figure: the test split
        ensembles = {label: f.result() | _sets(subsets.get(label)) for label, f in futures.items()}
    measured = collect(study, descents, plan, tests, ensembles)
    analysis = analyse_study(store, measured, config.fits)
    rows = search_rows(descents)
    runs = sorted({d.runs[p].rel for d in descents.values() for p in d.runs} | {r.rel for r in refs})
    result = ScalingStudyResult(
        flow_run_id=flow_run.id,
        data=data,
        searches=rows,
        study=measured,
        analysis=analysis,
        runs=runs,
        report_uri="",
        members={label: [refs[i].rel for i in idx] for label, idx in plan.members.items()},
        figures=figures(measured, analysis),
    )
    rendered = method_report("scaling", config, result, store)
    key = stable_hash(key_dict(config))
    result.report_uri = publish_report(store, "scaling", key, rendered.markdown, rendered.files)
    return result


def _check_budgets(config: ScalingStudyConfig, data: DataRef) -> None:
    if data.n_test <= 0:
        raise ValueError("the scaling study reports on the test split: set data.test_fraction > 0")
    for budget in [config.tokens, *config.efficiency.budgets]:
        if budget > data.n_train:
            raise ValueError(
                f"token budget {budget:,} exceeds the corpus's {data.n_train:,} training tokens; "
                "lower budget / efficiency.budgets or use a larger data.source"
            )


# ----------------------------------------------------------------------------- main job and CLI


def report(
    config: ScalingStudyConfig, result: ScalingStudyResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    r = result
    markdown, files = render(config, r.data, r.searches, r.study, r.analysis, prefix=prefix, level=level)
    return Report(markdown, files, r.figures)


def summary(result: ScalingStudyResult) -> tuple[dict, str]:
    shown = ", ".join(f"{k} {v}" for k, v in result.figures.items() if not k.startswith("loss_per_k"))
    return result.figures, shown
