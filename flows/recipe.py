"""The recipe: from a pile of text to the best model it buys, each stage consuming the one before.

1. Scaling (flows/scaling.py): certified searches of the standard and regularized recipes at every
   size, seed replicas, K members at the paper's member recipe, fits and asymptotes.
2. Hand-over: of the chosen size, the certified standard and regularized single models and the K
   members, read from the study's result as run references; the soups' base is the member with the
   lowest validation loss.
3. Distillation (flows/distillation.py) taught by exactly those runs (teacher.members, teacher.single).
4. Soups (flows/soups.py): fine-tunes of the best member souped and merged, and the members' naive
   and aligned averages (independent.runs).
5. The ladder: every candidate scored by one evaluator on validation (the final choice) and on test
   (every figure), with its parameters, inference FLOPs per token, training FLOPs and data multiplier
   (the text the standard recipe would need for its loss, from the study's own L(D)).

Each stage is a subflow whose cached steps are keyed by the references it was handed, never by a
matching config: change the members and distillation and soups run again, nothing upstream does.
A second call trains nothing. What is handed over and what goes on the ladder is decided in
asymptote/recipe_plan.py; the report is asymptote/reports/recipe.py.
"""

from __future__ import annotations

import functools

from prefect import flow
from prefect.runtime import flow_run

from asymptote import preflight
from asymptote.config import key_dict, stable_hash
from asymptote.flows.distillation import distill
from asymptote.flows.reporting import method_report, publish_report, publish_results
from asymptote.flows.scaling import scaling_study
from asymptote.flows.soups import soup_study
from asymptote.flows.stage_memo import reuse_or_run
from asymptote.infra.cluster import compute_session
from asymptote.ladder import climb
from asymptote.ladder_data import with_data_multipliers
from asymptote.recipe_config import RecipeConfig, RecipeResult
from asymptote.recipe_plan import Candidate, candidates, hand_over, handed_size, rungs
from asymptote.store import Store
from asymptote.tasks.distill import test_eval
from asymptote.tasks.ensembles import ensemble_eval


@flow(name="recipe", log_prints=True)
def run_recipe(config: RecipeConfig | None = None) -> RecipeResult:
    """Scaling -> hand-over -> distillation -> soups -> the ladder and the final model."""
    config = config or RecipeConfig()
    with preflight.one_check_per_call():  # the stages' subflows check only what is new to them
        preflight.check(config)  # bad data, store or model references fail here, before any step
        store = Store(config.store)
        # The chain and each of its stages run unless their stored results still hold (flows/stage_memo.py).
        return reuse_or_run("recipe", config, store, functools.partial(chain, config, store))


def chain(config: RecipeConfig, store: Store) -> RecipeResult:
    with compute_session(config.compute.ray_address):
        stage = config.scaling_config()
        scaled = reuse_or_run("scaling", stage, store, lambda: scaling_study(stage))  # 1.
        members = scaled.members[handed_size(config)]
        member_val = ensemble_eval(store, members, scaled.data.rel).result()["member"]  # distillation's key
        h = hand_over(config, scaled, member_val)  # 2.
        taught = config.distill_config(h.single["regularized"], h.members)
        distilled = reuse_or_run("distill", taught, store, lambda: distill(taught))  # 3.
        souping = config.soups_config(h.base, h.members)
        souped = reuse_or_run("soups", souping, store, lambda: soup_study(souping))  # 4.
        cands = candidates(h, distilled, souped)  # 5.
        val, test = score(store, cands, scaled.data.rel)
        ladder = climb(rungs(store, cands, val, test, h, distilled, souped))
        windows = {name: t["windows"] for (name, _, _), t in zip(cands, test, strict=True)}
        ladder = with_data_multipliers(ladder, scaled.study, stage.fits, windows)
    result = RecipeResult(
        flow_run_id=flow_run.id,
        data=scaled.data,
        handover=h,
        scaling=scaled,
        distill=distilled,
        soups=souped,
        ladder=ladder,
        report_uri="",
    )
    rendered = method_report("recipe", config, result, store)
    key = stable_hash(key_dict(config))
    result.report_uri = publish_report(store, "recipe", key, rendered.markdown, rendered.files)
    publish_results("recipe", config, result, store, result.report_uri)
    return result


def score(store: Store, cands: list[Candidate], data_rel: str) -> tuple[list[float], list[dict]]:
    """Every candidate's validation loss (its ensemble at all its runs) and test figures: cached
    evaluations, all submitted before any is waited for."""
    val = [ensemble_eval(store, runs, data_rel, split="val") for _, _, runs in cands]
    test = [test_eval(store, runs, data_rel) for _, _, runs in cands]
    return [v.result()["logits"][-1] for v in val], [t.result() for t in test]
