"""Pre-training under infinite compute: the data-constrained recipe, ensembles and asymptotes.

Following Kim, Kotha, Liang and Hashimoto (2025): with the training tokens fixed at a budget D and
compute unconstrained, how low can validation loss go?

1. Search. For each model size, certified coordinate descent over (learning rate, weight decay,
   epochs) finds the best setting of two recipes: *standard* (weight decay fixed, 0.1 in the paper)
   and *regularized* (weight decay tuned too). Sizes run smallest first; each starts at the previous
   size's optimum. Every point is a cached training run; a round's points train concurrently.
2. Parameter scaling. L(N) = A / N^alpha + E per recipe; E is the recipe's asymptote.
3. Ensembles. At each size, K members train from the regularized optimum with epochs doubled and
   weight decay halved, member k with train_seed = data_seed = k. Members are evaluated streamed
   (one in memory at a time), averaging logits (the paper's choice) and probabilities. L(K) =
   A / K^beta + C per size, then C_N = A / N^alpha + E: the joint (N, K -> infinity) asymptote.
4. Data efficiency. The standard recipe is searched again at other budgets; its best loss L(D) =
   A / D^alpha + E is inverted to say how many times D it needs to reach each asymptote.
5. An epoch sweep at one size shows loss against epochs with weight decay fixed vs tuned.

Fits carry bootstrap intervals; the report (markdown + PNGs) goes to the store and to Prefect.
Nothing from the paper is hard-coded: its grid is only the default of `SearchGrid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
from asymptote.flows.scaling_report import figures, render
from asymptote.infra.cluster import compute_session
from asymptote.job import TrainJob, make_job
from asymptote.refs import DataRef
from asymptote.scaling import CoordinateDescent, member_train, param_count, point_job
from asymptote.scaling_analysis import Analysis, SizeData, StudyData, analyse
from asymptote.scaling_config import ScalingStudyConfig
from asymptote.search_space import RECIPES, Point, size_label
from asymptote.store import Store
from asymptote.tasks.ensembles import ensemble_eval
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.reports import Report, publish_report
from asymptote.tasks.scaling import Descent, descend, train_all, tune_search

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

    def point_job(self, model: ModelConfig, budget: int, point: Point) -> TrainJob:
        name = f"{size_label(model)} D={budget:,} {point.label()}"
        return point_job(
            model, self.data_at(budget), self.data.rel, self.config.train, point, **self.volatile(name)
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


def sweep_and_members(study: Study, descents: dict) -> tuple[dict[str, dict[float, float]], dict[str, list]]:
    """The epoch sweep at one size and every size's members, trained together.

    Sweep: each recipe's optimum (lr, weight decay) run at every grid epoch count. The curve per
    recipe is then the best loss known at each epoch count within that recipe's search space (the
    sweep runs and every point its descent ran), so "tuned" means tuned at that epoch count too.
    """
    cfg = study.config
    label, model = cfg.sweep_label, cfg.sizes[cfg.sweep_size]
    points = {
        r: [descents[(label, r, cfg.tokens)].best._replace(epochs=e) for e in cfg.search.grid.epochs]
        for r in ("standard", "regularized")
    }
    sweep_jobs = [study.point_job(model, cfg.tokens, p) for r in points for p in points[r]]
    member_jobs = [
        study.member_job(m, descents[(lab, "regularized", cfg.tokens)].best, k)
        for m, lab in zip(cfg.sizes, cfg.labels, strict=False)
        for k in range(1, cfg.ensemble.members + 1)
    ]
    refs = iter(train_all(sweep_jobs + member_jobs))
    known = {
        r: [(p.epochs, next(refs).val_loss) for p in pts]
        + [(p.epochs, v) for p, v in descents[(label, r, cfg.tokens)].cd.results.items()]
        for r, pts in points.items()
    }
    known["regularized"] += known["standard"]  # weight decay 0.1 is one of the tuned recipe's options
    sweep = {
        r: {e: min(_finite(v) for ep, v in kv if ep == e) for e in sorted({e for e, _ in kv})}
        for r, kv in known.items()
    }
    k = cfg.ensemble.members
    members = [next(refs) for _ in member_jobs]
    return sweep, {lab: members[i * k : (i + 1) * k] for i, lab in enumerate(cfg.labels)}


def _finite(loss: float) -> float:
    return loss if math.isfinite(loss) else math.inf  # a diverged run is worse than any finished one


def collect(study: Study, descents: dict, sweep: dict, members: dict, ensembles: dict) -> StudyData:
    cfg = study.config
    sizes = []
    for model, label in zip(cfg.sizes, cfg.labels, strict=False):
        best = {r: descents[(label, r, cfg.tokens)] for r in ("standard", "regularized")}
        sizes.append(
            SizeData(
                label=label,
                params=param_count(model),
                standard=best["standard"].cd.results[best["standard"].best],
                regularized=best["regularized"].cd.results[best["regularized"].best],
                members=[m.val_loss for m in members[label]],
                ensemble={h: ensembles[label][h] for h in ("logits", "probs")},
            )
        )
    efficiency = {}
    for (label, recipe, budget), d in descents.items():
        if recipe == "standard" and label in cfg.efficiency_labels:
            efficiency[budget] = min(efficiency.get(budget, float("inf")), d.cd.results[d.best])
    return StudyData(sizes=sizes, base_budget=cfg.tokens, sweep=sweep, efficiency=efficiency)


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
        descents = search_all(study)
        sweep, members = sweep_and_members(study, descents)
        futures = {
            label: ensemble_eval(store, [r.rel for r in refs], data.rel) for label, refs in members.items()
        }
        ensembles = {label: f.result() for label, f in futures.items()}
    measured = collect(study, descents, sweep, members, ensembles)
    analysis = analyse(measured, config.fits)
    rows = search_rows(descents)
    runs = sorted(
        {d.runs[p].rel for d in descents.values() for p in d.runs}
        | {r.rel for refs in members.values() for r in refs}
    )
    result = ScalingStudyResult(
        flow_run_id=flow_run.id,
        data=data,
        searches=rows,
        study=measured,
        analysis=analysis,
        runs=runs,
        report_uri="",
        figures=figures(measured, analysis),
    )
    rendered = report(config, result, store)
    key = stable_hash(key_dict(config))
    result.report_uri = publish_report(store, "scaling", key, rendered.markdown, rendered.files)
    return result


def _check_budgets(config: ScalingStudyConfig, data: DataRef) -> None:
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
