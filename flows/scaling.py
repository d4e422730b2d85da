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
estimate, a 95% interval, p_direction (the share of draws in the paper's direction) and a verdict; the report
(markdown + PNGs, asymptote/reports/scaling.py) goes to the store and to Prefect.
What to train is planned in asymptote/scaling_plan.py; nothing from the paper is hard-coded: its grid
is only the default of `SearchGrid`.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.runtime import flow_run

from asymptote import preflight
from asymptote.config import ModelConfig, key_dict, stable_hash
from asymptote.flows.reporting import Progress, method_report, publish_report, publish_results
from asymptote.infra.cluster import compute_session, ray_ready
from asymptote.scaling_analysis import figures
from asymptote.scaling_config import ScalingStudyConfig, ScalingStudyResult
from asymptote.scaling_plan import (
    Descent,
    SearchKey,
    Study,
    check_budgets,
    measured,
    plan_runs,
    search_rows,
    study_runs,
)
from asymptote.search_space import RECIPES, Point
from asymptote.store import Store
from asymptote.tasks.caching import cached
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.scaling import analyse_study, descend, evaluate_study, train_all
from asymptote.tuning.search import SearchResult, SearchSpec, run_search

__all__ = ["ScalingStudyConfig", "scaling_study"]


@flow(name="scaling-study", log_prints=True)
def scaling_study(config: ScalingStudyConfig | None = None) -> ScalingStudyResult:
    """Search every size, ensemble it, fit the asymptotes, measure data efficiency, report."""
    config = config or ScalingStudyConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    store = Store(config.store)
    with compute_session(config.compute.ray_address) as hub:
        data = prepare_data(config.data, store)
        check_budgets(config, data)
        study = Study(config, store, data, hub)
        descents = search_all(study)  # 1. selection: reads validation only
        plan = plan_runs(study, descents)  # 2. replicas, the epoch sweep and members, trained together
        refs = train_all(plan.jobs, on_done=Progress("scaling", config, "runs"))
        tests, ensembles = evaluate_study(store, refs, plan.members, data.rel)  # 3. every figure: test
    study_data = measured(config, descents, plan, tests, ensembles)
    analysis = analyse_study(store, study_data, config.fits)  # 4. fits, bootstraps, verdicts
    result = ScalingStudyResult(
        flow_run_id=flow_run.id,
        data=data,
        searches=search_rows(descents),
        study=study_data,
        analysis=analysis,
        runs=study_runs(descents, refs),
        report_uri="",
        members={label: [refs[i].rel for i in idx] for label, idx in plan.members.items()},
        figures=figures(study_data, analysis),
    )
    rendered = method_report("scaling", config, result, store)  # 5. the report
    key = stable_hash(key_dict(config))
    result.report_uri = publish_report(store, "scaling", key, rendered.markdown, rendered.files)
    publish_results("scaling", config, result, store, result.report_uri)
    return result


def search_all(study: Study) -> dict[SearchKey, Descent]:
    """Every size's descents, smallest size first; each size's descents advance together and start at
    the previous size's optima."""
    out: dict[SearchKey, Descent] = {}
    previous: dict[tuple[str, int], Point] = {}
    for model, label in zip(study.config.sizes, study.config.labels, strict=False):
        group = study.descents(model, label, previous)
        if study.config.search.engine == "tune":
            prefill_from_tune(study, model, group)
        descend(list(group.values()))
        out |= group
        previous |= {(recipe, budget): d.best for (_, recipe, budget), d in group.items()}
    return out


def prefill_from_tune(study: Study, model: ModelConfig, group: dict[SearchKey, Descent]) -> None:
    """Run each search as a Ray Tune experiment; the flow's descent then certifies from its results."""
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
        found = cached(tune_search, study.store)(spec.model_dump(), key=spec.key)
        d.cd.results.update(SearchResult.model_validate(found).losses())


@task(name="tune-search", retries=0)
def tune_search(spec: dict, key: str) -> dict:
    """A Ray Tune search (optuna / bayesopt / certified) as one cached step, keyed by its spec."""
    ray_ready()
    return run_search(SearchSpec.model_validate(spec)).model_dump()
