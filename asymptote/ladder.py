"""The recipe's ladder: every model the chain made, what it costs, and the one chosen on validation.

A rung is one model you could ship: a single run, an ensemble of K runs, a student, a soup or an
average. Each carries its test loss and bits per byte (reported only), its validation loss (the
only thing the final choice reads), the parameters it holds at inference, its forward FLOPs per
token (an ensemble runs all K members) and the training FLOPs of every run it needs (an ensemble's
members, a student's teachers and its own run, a soup's base and all of its fine-tunes; searches,
shared by every rung, are left out). Pure arithmetic and text: no torch, no Prefect.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from asymptote.config import ModelConfig
from asymptote.flops import inference_flops_per_token, train_flops_per_token

Kind = Literal["single", "ensemble", "student", "soup", "average"]


class Rung(BaseModel):
    name: str
    kind: Kind
    runs: list[str]
    """Store-relative paths of the model's weights (K of them for an ensemble)."""
    params: int
    """Parameters held at inference (K x one member for an ensemble)."""
    inference_flops: int
    """Forward FLOPs per token (K x one member for an ensemble)."""
    train_flops: float
    """Training FLOPs of every run this model needs (searches excluded)."""
    val_loss: float
    """Validation loss (nats/token): what the final choice reads."""
    test_loss: float
    """Test loss (nats/token): reported only."""
    test_bpb: float | None
    """Test bits per byte (None where the corpus's byte counts are unknown)."""
    test_ci: list[float] | None = None
    """95% interval of test_loss over resampled test windows (one trained model: seed noise not included)."""
    data_multiplier: dict[str, Any] | None = None
    """The text the standard recipe would need for this test loss, as a multiple of the text used
    ({value, ci, level, reachable}; asymptote.ladder_data). None: no identified L(D) (Ladder.data_law says why)."""


class Ladder(BaseModel):
    rungs: list[Rung]
    chosen: str
    """Name of the rung with the lowest validation loss: the recipe's final model."""
    dropped: dict[str, float] = {}
    """Candidates scored on validation but beaten by a rung of their kind (name -> validation loss)."""
    data_law: dict[str, Any] | None = None
    """The standard recipe's L(D) the multipliers rest on: budgets, losses, A, alpha, E, identified,
    reason (None: not computed)."""

    def final(self) -> Rung:
        return next(r for r in self.rungs if r.name == self.chosen)


def run_train_flops(model: ModelConfig, tokens: int, teachers: list[ModelConfig] = ()) -> float:
    """One run's training FLOPs: forward and backward on each of its tokens, plus one forward of every
    teacher per token when it learns from their distribution (token-level KL)."""
    per_token = train_flops_per_token(model) + sum(inference_flops_per_token(t) for t in teachers)
    return float(tokens) * per_token


def sampling_flops(teachers: list[ModelConfig], tokens: int) -> float:
    """FLOPs of sampling `tokens` from an ensemble: one forward of every teacher per token (KV cache)."""
    return float(tokens) * sum(inference_flops_per_token(t) for t in teachers)


def inference_cost(model: ModelConfig, members: int = 1) -> int:
    """Forward FLOPs per token of a model, or of an ensemble of `members` of that shape."""
    return members * inference_flops_per_token(model)


def best_of_kind(candidates: list[Rung], kinds: tuple[str, ...]) -> tuple[list[Rung], dict[str, float]]:
    """Keep, of each kind in `kinds`, only the candidate with the lowest validation loss (in the order
    the candidates came); every other kind is kept whole. Returns (kept, dropped name -> val loss)."""
    best = {}
    for r in candidates:
        if r.kind in kinds and (r.kind not in best or _val(r) < _val(best[r.kind])):
            best[r.kind] = r
    kept = [r for r in candidates if r.kind not in kinds or best[r.kind] is r]
    return kept, {r.name: r.val_loss for r in candidates if r not in kept}


def climb(candidates: list[Rung], one_per_kind: tuple[str, ...] = ("student", "soup")) -> Ladder:
    """The ladder: the best student and soup on validation beside the other rungs, the final model the
    lowest validation loss of all (a diverged model never wins)."""
    if not candidates:
        raise ValueError("the ladder needs at least one candidate model")
    rungs, dropped = best_of_kind(candidates, one_per_kind)
    chosen = min(rungs, key=_val).name
    return Ladder(rungs=rungs, chosen=chosen, dropped=dropped)


def _val(r: Rung) -> float:
    return r.val_loss if math.isfinite(r.val_loss) else math.inf


def window_interval(windows: Sequence[float], n: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean loss over test windows resampled with replacement."""
    if len(windows) == 0:
        raise ValueError("window_interval: no windows")
    lo, hi = np.percentile(window_means(windows, n, np.random.default_rng(seed)), [2.5, 97.5])
    return [float(lo), float(hi)]


def window_means(windows: Sequence[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) means of the test windows resampled with replacement."""
    losses = np.asarray(windows, np.float64)
    return losses[rng.integers(0, losses.size, (n, losses.size))].mean(1)


def _sci(x: float) -> str:
    return f"{x:.2e}"


def rows(ladder: Ladder) -> list[dict[str, str]]:
    """The ladder as table rows (strings): the final model marked, ratios against the first rung."""
    first = ladder.rungs[0]
    out = []
    for r in ladder.rungs:
        out.append(
            {
                "model": f"**{r.name}** (final)" if r.name == ladder.chosen else r.name,
                "test loss": f"{r.test_loss:.4f}",
                "test 95% CI": "n/a" if r.test_ci is None else f"[{r.test_ci[0]:.4f}, {r.test_ci[1]:.4f}]",
                "test bpb": "n/a" if r.test_bpb is None else f"{r.test_bpb:.4f}",
                "val loss": f"{r.val_loss:.4f}",
                "params": f"{r.params:,}",
                "inference FLOPs/token": _sci(r.inference_flops),
                "x first": f"{r.inference_flops / first.inference_flops:.1f}",
                "training FLOPs": _sci(r.train_flops),
            }
            | ({} if ladder.data_law is None else {"data x standard": multiplier_cell(r.data_multiplier)})
        )
    return out


def multiplier_cell(m: Mapping[str, Any] | None) -> str:
    """A data multiplier as text: value [interval], "beyond E" when the standard law never reaches the
    loss, n/a when there is none."""
    if m is None:
        return "n/a"
    if not m["reachable"]:
        return "beyond the standard law's E"
    lo, hi = ("inf" if v is None else f"{v:.2f}" for v in m["ci"])
    return f"{m['value']:.2f} [{lo}, {hi}]"


def data_law_note(ladder: Ladder) -> str:
    """What the multiplier column means, or why there is none."""
    law = ladder.data_law
    if law is None:
        return ""
    budgets = ", ".join(f"{b:,}" for b in law["budgets"]) or "none"
    if not any(r.data_multiplier for r in ladder.rungs):
        return (
            f"No data multiplier: the standard recipe's data law L(D) (token budgets {budgets}, set by "
            f"scaling.efficiency.budgets and the study's budget) cannot "
            f"support one: {law['reason']}.\n"
        )
    return (
        "Data x standard: the training text the standard recipe would need to reach each rung's test "
        f"loss, as a multiple of the {law['base_budget']:,} tokens used, from the scaling study's L(D) "
        f"over budgets {budgets} (E = {law['E']:.4f}; the standard recipe's best over the sizes in "
        "scaling.efficiency.sizes, so a larger rung can gain from its size too); the interval pairs the law's seed bootstrap "
        "with one model's seed noise and the rung's test windows. Beyond E: no amount of text takes "
        "the standard recipe there.\n"
    )


def table(items: list[dict[str, str]]) -> str:
    if not items:
        return "_(none)_"
    cols = list(items[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(r[c] for c in cols) + " |" for r in items])


def render(ladder: Ladder, heading: str = "##") -> str:
    """The ladder as a markdown section: the table, the final model and what was dropped."""
    f = ladder.final()
    text = (
        f"{heading} The ladder\n\n{table(rows(ladder))}\n\n"
        f"Final model: **{f.name}**, the lowest validation loss ({f.val_loss:.4f}); on test {f.test_loss:.4f} "
        f"nats/token. The test interval resamples test windows of each model as trained once (seed noise "
        "is not in it). Inference FLOPs/token counts every member an ensemble runs (x first: against the "
        "first rung); training FLOPs count every run the model needs, searches excluded.\n"
    )
    if note := data_law_note(ladder):
        text += f"\n{note}"
    if ladder.dropped:
        shown = ", ".join(f"{n} {v:.4f}" for n, v in ladder.dropped.items())
        text += f"\nAlso scored on validation, beaten by a rung of their kind: {shown}.\n"
    return text
