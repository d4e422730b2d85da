"""The recipe's report: the ladder and the final model, then each stage's own report one level down.
Pure: no Prefect or Ray."""

from __future__ import annotations

from asymptote.ladder import multiplier_cell, render
from asymptote.recipe_config import RecipeConfig, RecipeResult
from asymptote.reports import Report, distill, scaling, shift_headings, soups
from asymptote.reports.sections import drawn_once
from asymptote.scaling_config import ScalingStudyResult
from asymptote.store import Store


def markdown(config: RecipeConfig, result: RecipeResult, store: Store) -> str:
    h, s = result.handover, result.scaling
    links = [
        f"- scaling study: `{s.report_uri}` (asymptotes on test: {asymptotes(s)})",
        f"- distillation: `{result.distill.report_uri}`",
        f"- soups: `{result.soups.report_uri}`",
    ]
    return (
        f"# Recipe: {config.name}\n\nCorpus `{result.data.uri}`, {config.scaling.tokens:,} training tokens. "
        f"The chain ran at size {h.size}: its certified single models, its {len(h.members)} members (the "
        "paper's member recipe), students taught by those members, soups of fine-tunes of the best member "
        f"(`{h.base}`, validation {min(h.member_val):.4f}) and the members' aligned average. Every choice "
        "was made on validation; every figure below is on the test split.\n\n"
        f"{render(result.ladder)}\n"
        f"The final model's weights: {', '.join(f'`{store.uri(r)}`' for r in result.ladder.final().runs)}. "
        "Validation was read by every stage's own choices too (searches, students' settings, the soups' "
        "held-out half), so validation losses flatter every rung a little; test losses do not.\n\n"
        "## Stages\n\n" + "\n".join(links) + "\n"
    )


def asymptotes(s: ScalingStudyResult) -> str:
    """The study's fitted asymptotes in a line: value and interval, or why there is none."""
    out = []
    for name in ("standard", "regularized", "joint"):
        value, ci = s.figures.get(f"{name}_asymptote"), s.figures.get(f"{name}_asymptote_ci")
        shown = f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if value is not None and ci else "not identified"
        out.append(f"{name} {shown}")
    return ", ".join(out)


def report(
    config: RecipeConfig, result: RecipeResult, store: Store, level: int = 1, prefix: str = ""
) -> Report:
    """The ladder, then each stage's own report one level down (its plots named <prefix><stage>-...),
    each drawn once: the stage's flow drew it already unless the heading level or prefix differ."""
    h = result.handover
    stages = {
        "scaling": (scaling.report, config.scaling_config(), result.scaling),
        "distill": (
            distill.report,
            config.distill_config(h.single["regularized"], h.members),
            result.distill,
        ),
        "soups": (soups.report, config.soups_config(h.base, h.members), result.soups),
    }
    sections = [
        drawn_once(name, draw, cfg, res, store, level=level + 1, prefix=f"{prefix}{name}-")
        for name, (draw, cfg, res) in stages.items()
    ]
    text = shift_headings(markdown(config, result, store), level - 1)
    text += "\n\n" + "\n\n".join(s.markdown for s in sections)
    files = {n: b for s in sections for n, b in s.files.items()}
    return Report(text, files, figures(result))


def figures(result: RecipeResult) -> dict:
    f = result.ladder.final()
    return {
        "final": result.ladder.chosen,
        "final_test_loss": f.test_loss,
        "final_test_bpb": f.test_bpb,
        "test_loss": {r.name: r.test_loss for r in result.ladder.rungs},
        "test_ci": {r.name: r.test_ci for r in result.ladder.rungs},
        "val_loss": {r.name: r.val_loss for r in result.ladder.rungs},
        "data_multiplier": {r.name: r.data_multiplier for r in result.ladder.rungs},
        "data_law": result.ladder.data_law,
    }


def summary(result: RecipeResult) -> tuple[dict, str]:
    """The final model and the ladder on test, a rung a line, each with its interval over test windows."""
    f = result.ladder.final()
    width = max(len(r.name) for r in result.ladder.rungs)
    rungs = [f"  {r.name:<{width}}  {r.test_loss:.4f} {_ci(r.test_ci)}" for r in result.ladder.rungs]
    head = f"final: {f.name} (test {f.test_loss:.4f}); the ladder on test (nats/token, 95% CI over test windows):"
    return figures(result), "\n".join([head, *rungs, *_multiplier_line(result)])


def _multiplier_line(result: RecipeResult) -> list[str]:
    """The final model's data multiplier, or why there is none (nothing for a result that predates it)."""
    law = result.ladder.data_law
    if law is None:
        return []
    m = result.ladder.final().data_multiplier
    if m is None:
        return [f"data multiplier: none (the standard recipe's L(D): {law['reason']})"]
    if not m["reachable"]:
        return [
            f"data multiplier of the final model: none finite, its test loss is below the standard law's E ({law['E']:.4f})"
        ]
    return [f"data multiplier of the final model: {multiplier_cell(m)} x the standard recipe's text"]


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def table(result: RecipeResult) -> list[dict]:
    """The ladder: each rung's size, cost and losses; `final` marks the one chosen on validation."""
    keep = (
        "name",
        "kind",
        "params",
        "inference_flops",
        "train_flops",
        "val_loss",
        "test_loss",
        "test_ci",
        "test_bpb",
        "data_multiplier",
    )
    return [
        r.model_dump(include=set(keep)) | {"final": r.name == result.ladder.chosen}
        for r in result.ladder.rungs
    ]
