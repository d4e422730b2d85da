"""What the scaling study trains, and how its measurements are put together. Pure: no torch, Ray or Prefect.

The flow asks this module which searches to run at each size and where each starts (`Study.descents`),
which runs to train once every search is certified (`plan_runs`: seed replicas, the epoch sweep, the
ensemble members), and assembles the measured study from what its steps returned (`measured`,
`search_rows`). Every run is a TrainJob built by `asymptote.scaling.point_job` or the member recipe,
so equal settings give equal job keys whichever study (or Tune trial) trains them first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from asymptote.config import DataConfig, ModelConfig
from asymptote.flops import param_count
from asymptote.job_spec import TrainJob, make_job
from asymptote.refs import DataRef, RunRef
from asymptote.scaling import CoordinateDescent, member_train, point_job
from asymptote.scaling_config import ScalingStudyConfig, SearchRow, SizeData, StudyData
from asymptote.search_space import RECIPES, Point, size_label
from asymptote.store import Store

SearchKey = tuple[str, str, int]
"""(size label, recipe, token budget) of one search."""


@dataclass
class Descent:
    """One certified coordinate descent (a size, a recipe, a budget) whose points are cached runs."""

    name: str
    cd: CoordinateDescent
    job: Callable[[Point], TrainJob]
    runs: dict[Point, RunRef] = field(default_factory=dict)
    # points first submitted to fill an idle slot (CoordinateDescent.spare), not because the walk needed them
    spares: set[Point] = field(default_factory=set)

    @property
    def best(self) -> Point:
        return self.cd.best()


def check_budgets(config: ScalingStudyConfig, data: DataRef) -> None:
    """The corpus holds every budget and has a test split (every reported figure is read there)."""
    if data.n_test <= 0:
        raise ValueError("the scaling study reports on the test split: set data.test_fraction > 0")
    for budget in [config.tokens, *config.efficiency.budgets]:
        if budget > data.n_train:
            raise ValueError(
                f"token budget {budget:,} exceeds the corpus's {data.n_train:,} training tokens; "
                "lower budget / efficiency.budgets or use a larger data.source"
            )


def _finite(loss: float) -> float:
    return loss if math.isfinite(loss) else math.inf  # a diverged run is worse than any finished one


# ----------------------------------------------------------------------------- the searches


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

    def descents(self, model: ModelConfig, label: str, previous: dict[tuple[str, int], Point]) -> dict:
        """One size's searches: both recipes at the study's budget and, at an efficiency size, the
        standard recipe at every other budget; each starts at the previous size's optimum (warm start)."""
        cfg = self.config
        s = cfg.search.start
        first = Point(s.lr, s.weight_decay, s.epochs)
        searches = [("standard", cfg.tokens), ("regularized", cfg.tokens)]
        if label in cfg.efficiency_labels:
            searches += [("standard", b) for b in cfg.efficiency.budgets]
        out: dict[SearchKey, Descent] = {}
        for recipe, budget in searches:
            start = previous.get((recipe, budget), first) if cfg.search.warm_start else first
            out[(label, recipe, budget)] = self.descent(model, recipe, budget, start)
        return out

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


def efficiency_choices(config: ScalingStudyConfig, descents: dict) -> dict[int, tuple[str, Point]]:
    """Per budget, the standard recipe's optimum over the efficiency sizes, chosen on validation."""
    out: dict[int, tuple[str, Point, float]] = {}
    for (label, recipe, budget), d in descents.items():
        if recipe == "standard" and label in config.efficiency_labels:
            loss = _finite(d.cd.results[d.best])
            if budget not in out or loss < out[budget][2]:
                out[budget] = (label, d.best, loss)
    return {b: (label, p) for b, (label, p, _) in out.items()}


# ----------------------------------------------------------------------------- the runs after the search


@dataclass
class Plan:
    """Every run measured after the search, as jobs in one list (trained together), and where each is."""

    jobs: list[TrainJob]
    replicas: dict[SearchKey, list[int]]
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
    targets |= {(lab, "standard", b): p for b, (lab, p) in efficiency_choices(cfg, descents).items()}
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


# ----------------------------------------------------------------------------- the measured study


def ensemble_sets(out: dict | None) -> dict:
    """An ensemble-sets evaluation -> SizeData's subsets (and multisets and windows when evaluated per
    block: the subsets are then the multisets without repeats, weighted over the blocks)."""
    if out is None:
        return {"subsets": {}}
    if "losses" not in out:
        return {"subsets": out}
    losses, windows = out["losses"], out["windows"]
    subsets = {k: float(np.average(v, weights=windows)) for k, v in losses.items() if _distinct(k)}
    return {"subsets": subsets, "multisets": losses, "windows": windows}


def _distinct(key: str) -> bool:
    parts = key.split(",")
    return len(set(parts)) == len(parts)


def measured(
    config: ScalingStudyConfig, descents: dict, plan: Plan, tests: list[dict], ensembles: dict
) -> StudyData:
    """The measured study: test losses per seed, per member, per ensemble size, per sweep point."""

    def test(i: int) -> float:
        return float(tests[i].get("test_loss", math.nan))

    sizes = []
    for model, label in zip(config.sizes, config.labels, strict=True):
        d = {r: descents[(label, r, config.tokens)] for r in RECIPES}
        sizes.append(
            SizeData(
                label=label,
                params=param_count(model),
                standard=[test(i) for i in plan.replicas[(label, "standard", config.tokens)]],
                regularized=[test(i) for i in plan.replicas[(label, "regularized", config.tokens)]],
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
        for b, (label, _) in efficiency_choices(config, descents).items()
    }
    sweep = {r: {e: test(i) for e, i in pts.items()} for r, pts in plan.sweep.items()}
    return StudyData(
        sizes=sizes,
        base_budget=config.tokens,
        sweep=sweep,
        efficiency=efficiency,
        standard_wd=config.search.standard_weight_decay,
        wd_grid=list(config.search.grid.weight_decay),
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


def study_runs(descents: dict, refs: list[RunRef]) -> list[str]:
    """Every run the study used: each search's points and every run trained after the searches."""
    return sorted({d.runs[p].rel for d in descents.values() for p in d.runs} | {r.rel for r in refs})
