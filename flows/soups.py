"""Model soups: average fine-tunes of one base, merge them, and average independently trained models.

1. Data: the target corpus is tokenised once. Held-out is a share of its validation split (chunks of
   soups.split_chunk_windows windows, spread evenly; asymptote.soups_config.heldout_test_split).
   Fine-tunes train on the train split; every choice (greedy order and acceptance, learned weights,
   MWA losses, merge scales) is made on held-out; figures are reported on the test split (on the
   validation chunks not held-out when the corpus has no test split; result.split names which).
   (A fine-tune's own summary val_loss, logged during training, covers the whole validation split
   and is never used to choose.)
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
   the test split and on the base corpus's test split (out of distribution) with a bootstrap
   interval (asymptote.stats, paired by window) of its gain over the best single fine-tune (chosen
   on held-out). One call is one base; bench/soups.py pools several.
5. Independent members trained from scratch (different seeds): naive average vs weight-matched
   average, against their ensemble.
6. A report: gains with intervals and verdicts (only where the interval excludes 0), the probe, a held-out vs test plot
   of every model and the loss along the segments (the two best ingredients; the base to the soup).
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from asymptote import preflight
from asymptote.flows.registry import METHODS
from asymptote.flows.reporting import Progress, method_report, publish_report, publish_results
from asymptote.infra.cluster import compute_session
from asymptote.infra.tracking import log_models
from asymptote.shards import corpus_rel
from asymptote.soups_config import Kitchen, SoupStudyConfig, SoupStudyResult
from asymptote.store import Store
from asymptote.tasks.caching import check_recompute
from asymptote.tasks.pretrain import prepare_data
from asymptote.tasks.soups import averages, cook, finetune_sweep, kitchen_key, start_members, submit_base

STEPS = METHODS["soups"].steps


@flow(name="soups", log_prints=True)
def soup_study(config: SoupStudyConfig | None = None, recompute: list[str] | None = None) -> SoupStudyResult:
    """Data -> base -> sweep (or given checkpoints) -> soups and merges -> independent averages -> report."""
    config = config or SoupStudyConfig()
    preflight.check(config)  # bad data, store or model references fail here, before any step
    recompute = check_recompute(recompute or [], STEPS)
    store, again = Store(config.store), lambda step: step in recompute
    progress = Progress("soups", config, "steps")
    with compute_session(config.compute.ray_address) as hub:
        gpu = config.compute.use_gpu  # "auto" is resolved by the tasks that run (tasks.soups.resolve_gpu)
        # 1. Data: the target corpus, tokenised once.
        target = prepare_data(config.data, store, refresh=again("data"))
        progress.passed("data", STEPS)
        given = [store.model_ref(r, f"ingredients[{i}]") for i, r in enumerate(config.ingredients)]
        # 2. Base: given, or submitted to train here; the independent members queue after it (5).
        pending, corpus = (None, None)
        if config.base.run or not given:
            pending, corpus = submit_base(config, store, target, hub, again("base"))
        members = start_members(config, store, target, given, hub, again("independent"))
        base = pending.result().rel if hasattr(pending, "result") else pending
        progress.passed("base", STEPS)
        # 3. Sweep: fine-tunes of the base (and the basin probe), unless the ingredients are given.
        finetunes, probe = (
            ([], []) if given else finetune_sweep(config, store, base, target, hub, again("sweep"), gpu)
        )
        progress.passed("sweep", STEPS)
        # 4. Soups and merges of the ingredients, scored on held-out, test and the base corpus's test.
        kitchen = Kitchen(
            ingredients=given or [f.run.rel for f in finetunes],
            data=target.rel,
            soups=config.soups,
            base=base,
            merges=config.merges,
            ood_data=corpus.rel if corpus is not None and corpus.rel != target.rel else None,
        )
        cooking = cook(store, kitchen, gpu, refresh=again("soups"))
        progress.passed("soups", STEPS)
        # 5. Independent members: naive and aligned averages against their ensemble.
        independent = averages(config, store, members, target, gpu, again("independent"))
        progress.passed("independent", STEPS)
    result = SoupStudyResult(
        flow_run_id=flow_run.id,
        data=target,
        base=base,
        finetunes=finetunes,
        entries=cooking.entries + independent,
        report_uri="",
        segments=cooking.segments,
        probe=probe,
        split=cooking.split,
        ood_split=cooking.ood_split,
    )
    # 6. The report, committed beside the soups.
    rendered = method_report("soups", config, result, store)
    uri = publish_report(store, "soups", kitchen_key(store, kitchen), rendered.markdown, rendered.files)
    publish_results("soups", config, result, store, uri)
    log_models(store.cfg, store, result.tracked_models())  # soups and merges are MLflow runs too, if tracked
    return result.model_copy(update={"report_uri": uri})


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
