"""Model soups: weight averages of checkpoints fine-tuned from one base (Wortsman et al., 2022).

Every soup streams its ingredients. Checkpoints stay on disk and are read one at a time into a
running weighted mean, `acc <- acc + (w_k / W_k) * (x_k - acc)` with `W_k` the weight seen so far,
so peak memory is about two models (the mean and the ingredient being folded in) however many
ingredients there are. The running-mean form also makes the soup of identical models exactly
that model (x - acc is exactly zero), which a sum-then-divide in float32 would not.

Methods (each a pure function over checkpoints; no Ray, no Prefect):
- uniform: the plain mean of all ingredients.
- greedy: ingredients sorted by held-out loss, best first; the best starts the soup and each next
  one stays only if the soup's held-out loss strictly improves; one pass, as the reference code.
- learned (by layer): soup tensor t = sum_k softmax(alpha[:, t])_k * theta_{k,t}, one mixing logit
  per ingredient and per parameter tensor, trained with Adam on held-out batches. The gradient is
  streamed too: dL/dw_{k,t} = <g_t, theta_{k,t}> where g = dL/dtheta at the soup, so ingredients
  never need to be in memory together.
- mwa (metrics-weighted averaging): w_k = (L_k / L_min) ** (-p) / sum_j (L_j / L_min) ** (-p), with
  L_k the held-out loss of ingredient k and p >= 0 the one penalty exponent: p = 0 is the uniform
  soup and p -> infinity the best single ingredient.

Data rule: every choice (greedy order and acceptance, learned weights, MWA losses, merge scales, the
best single) reads the held-out split, a share of the target's validation split: the validation split
is cut into consecutive chunks of `split_chunk_windows` evaluation windows and a share
`heldout_fraction` of them, spread evenly, is held-out. Figures are reported on the target's test
split, which no choice reads; a corpus without one (data.test_fraction = 0) reports on the validation
chunks that are not held-out, and every report names the split it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

from asymptote.checkpoint import WEIGHTS
from asymptote.data import eval_windows, windows_to_batch
from asymptote.dist import DistEnv
from asymptote.evaluation import mean_loss
from asymptote.merges import merge
from asymptote.model import lm_loss
from asymptote.soups_config import MergeOptions, SoupOptions

Tensors = dict[str, torch.Tensor]
WeightFn = Callable[[int, str], float]  # (ingredient index, tensor name) -> mixing weight
Evaluate = Callable[[nn.Module], float]  # a model -> its held-out loss


class Ingredient(Protocol):
    """Something whose weights can be read whole or one tensor at a time."""

    name: str

    def load(self) -> Tensors: ...
    def keys(self) -> list[str]: ...
    def tensor(self, key: str) -> torch.Tensor: ...


@dataclass(frozen=True)
class Checkpoint:
    """A safetensors file on disk, read lazily: nothing is held between calls."""

    name: str
    path: Path

    @classmethod
    def from_folder(cls, folder: str | Path, name: str | None = None) -> "Checkpoint":
        folder = Path(folder)
        return cls(name or folder.name, folder / WEIGHTS)

    def load(self) -> Tensors:
        return load_file(str(self.path))

    def keys(self) -> list[str]:
        with safe_open(str(self.path), framework="pt") as f:
            return list(f.keys())

    def tensor(self, key: str) -> torch.Tensor:
        with safe_open(str(self.path), framework="pt") as f:
            return f.get_tensor(key)


# ----------------------------------------------------------------------------- data split


@torch.no_grad()
def window_losses(
    model: nn.Module, tokens: np.ndarray, block: int, device: torch.device | None = None, batch_size: int = 64
) -> np.ndarray:
    """Mean loss of each non-overlapping window (what a bootstrap resamples); their mean is mean_loss."""
    device = device or torch.device("cpu")
    out = []
    starts = eval_windows(len(tokens), block)
    for i in range(0, len(starts), batch_size):
        x, y = windows_to_batch(tokens, starts[i : i + batch_size], block)
        logits = model(x.to(device))
        per_token = nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), y.to(device).flatten(), reduction="none"
        )
        out.append(per_token.view(y.shape).mean(1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


@dataclass
class Scorer:
    """Every loss the soups need, split by what may read it.

    `held` (the held-out split) is the only loss any choice may use: greedy order and acceptance,
    learned weights, MWA losses, merge scales, the best single ingredient, the sweep's basin probe.
    `test_windows` (the reported split, named by `split`) and `ood_windows` (the pretraining corpus's
    test split, off the fine-tuning distribution, named by `ood_split`) are reported only, as
    per-window losses for the paired bootstrap (asymptote.soups_gains).
    """

    heldout: np.ndarray
    test: np.ndarray
    block: int
    windows: int | None = None
    """Cap on held-out windows (evenly spaced); test and OOD always use every window."""
    device: torch.device = torch.device("cpu")
    ood: np.ndarray | None = None
    split: str = "test"
    """The real name of the reported split: "test", or "validation (not held-out)" without a test split."""
    ood_split: str = "test"

    def held(self, model: nn.Module) -> float:
        return mean_loss(
            model, self.heldout, self.block, DistEnv(device=self.device), max_windows=self.windows
        )

    def test_windows(self, model: nn.Module) -> np.ndarray:
        return window_losses(model, self.test, self.block, self.device)

    def ood_windows(self, model: nn.Module) -> np.ndarray | None:
        return None if self.ood is None else window_losses(model, self.ood, self.block, self.device)


# ----------------------------------------------------------------------------- loss along a segment


@torch.no_grad()
def along_segment(
    model: nn.Module, a: Tensors, b: Tensors, alphas: Sequence[float], evaluate: Callable[[nn.Module], dict]
) -> list[dict]:
    """evaluate((1 - alpha) a + alpha b) at each alpha; the model's weights are overwritten."""
    params = model.state_dict()
    rows = []
    for alpha in alphas:
        for name, acc in params.items():
            if acc.is_floating_point():
                acc.copy_(torch.lerp(a[name].to(acc), b[name].to(acc), float(alpha)))
            else:
                acc.copy_(a[name])
        rows.append({"alpha": float(alpha), **evaluate(model)})
    return rows


def basin_check(losses: Sequence[float]) -> dict:
    """Does a segment between two fine-tunes stay in one basin, and does their average pay?

    losses: held-out loss at evenly spaced alphas from 0 to 1 (an odd count, so the midpoint is one).
    barrier: the largest excess of an interior point over the straight chord between the ends
    (<= 0: no bump, the ends are linearly connected); midpoint_gain: min(ends) - loss at alpha 1/2
    (> 0: the two-ingredient uniform soup beats both). `soups` is True when the midpoint beats both.
    """
    if len(losses) < 3 or len(losses) % 2 == 0:
        raise ValueError(f"basin_check needs an odd number (>= 3) of evenly spaced points, got {len(losses)}")
    y = np.asarray(losses, np.float64)
    chord = np.linspace(y[0], y[-1], len(y))
    mid = y[len(y) // 2]
    gain = float(min(y[0], y[-1]) - mid)
    return {"barrier": float((y - chord)[1:-1].max()), "midpoint_gain": gain, "soups": bool(gain > 0)}


# ----------------------------------------------------------------------------- streaming means


def _fold(acc: Tensors, x: Tensors, k: int, weight: WeightFn, seen: dict[str, float]) -> None:
    """Fold ingredient k's tensors x into the running weighted means acc (in place)."""
    for name, value in x.items():
        w = float(weight(k, name))
        if w < 0:
            raise ValueError(f"soup weight {w} for ingredient {k}, tensor {name}: weights must be >= 0")
        total = seen.get(name, 0.0) + w
        if name not in acc:
            acc[name] = value.to(torch.float32 if value.is_floating_point() else value.dtype, copy=True)
        elif w > 0 and value.is_floating_point():
            if seen.get(name, 0.0) == 0:
                acc[name].copy_(value)
            else:
                acc[name].lerp_(value.to(acc[name]), w / total)
        seen[name] = total


@torch.no_grad()
def weighted_average(
    ingredients: Sequence[Ingredient], weight: WeightFn, into: Tensors | None = None
) -> Tensors:
    """The weighted mean of the ingredients, streamed; `into` (e.g. a state_dict) receives it in place."""
    if not ingredients:
        raise ValueError("a soup needs at least one ingredient")
    acc: Tensors = into if into is not None else {}
    seen: dict[str, float] = {}
    for k, ingredient in enumerate(ingredients):
        x = ingredient.load()
        _fold(acc, x, k, weight, seen)
        del x  # drop it before the next one loads: at most one ingredient is alive
    return acc


def uniform_soup(ingredients: Sequence[Ingredient]) -> Tensors:
    return weighted_average(ingredients, lambda k, name: 1.0)


def mwa_weights(losses: Sequence[float], penalty: float) -> list[float]:
    """w_k proportional to (L_k / L_min) ** (-penalty); normalised to sum to one."""
    if penalty < 0:
        raise ValueError(f"mwa penalty={penalty}: must be >= 0 (0 is the uniform soup)")
    losses = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError("mwa: every ingredient's loss is infinite or NaN; nothing to weight")
    ratios = np.where(finite, losses / losses[finite].min(), np.inf)
    w = np.where(finite, ratios ** (-penalty), 0.0)  # a diverged ingredient gets no weight
    return (w / w.sum()).tolist()


def mwa_soup(
    ingredients: Sequence[Ingredient], losses: Sequence[float], penalty: float
) -> tuple[Tensors, list[float]]:
    weights = mwa_weights(losses, penalty)
    return weighted_average(ingredients, lambda k, name: weights[k]), weights


# ----------------------------------------------------------------------------- greedy


@dataclass
class GreedyResult:
    order: list[int]
    """Ingredient indices in the order tried: held-out loss ascending (ties by index, non-finite last)."""
    chosen: list[int]
    """Ingredients in the soup, in the order they were added."""
    history: list[dict] = field(default_factory=list)
    """Per ingredient tried: index, held-out loss of the soup with it, whether it was kept."""
    loss: float = float("nan")
    """Held-out loss of the final soup."""


@torch.no_grad()
def greedy_soup(
    model: nn.Module, ingredients: Sequence[Ingredient], scores: Sequence[float], evaluate: Evaluate
) -> GreedyResult:
    """Greedy soup into model's weights (in place); scores are the ingredients' held-out losses.

    The candidate soup is formed in the model's own tensors and undone if rejected, so memory
    holds the model and one ingredient.
    """
    if len(scores) != len(ingredients):
        raise ValueError(f"greedy soup: {len(scores)} scores for {len(ingredients)} ingredients")
    # A diverged ingredient (NaN or infinite loss) goes last; comparisons with NaN never keep it.
    order = sorted(range(len(ingredients)), key=lambda k: (not math.isfinite(scores[k]), scores[k], k))
    params = model.state_dict()
    weighted_average([ingredients[order[0]]], lambda k, n: 1.0, into=params)
    result = GreedyResult(order=order, chosen=[order[0]])
    result.loss = evaluate(model)
    result.history.append({"index": order[0], "loss": result.loss, "kept": True})
    for k in order[1:]:
        x, n = ingredients[k].load(), len(result.chosen)
        for name, acc in params.items():
            acc.lerp_(x[name].to(acc), 1.0 / (n + 1))
        loss = evaluate(model)
        kept = loss < result.loss  # strictly better, as the reference
        result.history.append({"index": k, "loss": loss, "kept": kept})
        if kept:
            result.chosen.append(k)
            result.loss = loss
        else:  # undo the running mean: acc = (acc * (n + 1) - x) / n
            for name, acc in params.items():
                acc.mul_(n + 1).sub_(x[name].to(acc)).div_(n)
        del x
    # Undoing is exact only up to rounding: rebuild the chosen mean once, so one kept ingredient is
    # exactly that ingredient, and score what is returned.
    weighted_average([ingredients[k] for k in result.chosen], lambda k, n: 1.0, into=params)
    result.loss = evaluate(model)
    return result


# ----------------------------------------------------------------------------- learned (by layer)


@dataclass
class LearnedResult:
    names: list[str]
    """Parameter tensors, in the column order of `weights`."""
    weights: torch.Tensor
    """(ingredients, tensors) mixing weights; each column sums to one."""
    losses: list[float] = field(default_factory=list)
    """Held-out training-batch loss at every step."""


def _float_names(model: nn.Module) -> list[str]:
    return [n for n, t in model.state_dict().items() if t.is_floating_point()]


def build_mixture(
    model: nn.Module, ingredients: Sequence[Ingredient], weights: torch.Tensor, names: list[str]
) -> None:
    """Model weights <- per-tensor weighted means of the ingredients (weights: ingredients x tensors)."""
    column = {n: i for i, n in enumerate(names)}
    weighted_average(ingredients, lambda k, n: float(weights[k, column[n]]), into=model.state_dict())


def mixing_grad(
    model: nn.Module,
    ingredients: Sequence[Ingredient],
    weights: torch.Tensor,
    names: list[str],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> tuple[float, torch.Tensor]:
    """Loss of the mixture on a batch and dL/dweights (ingredients x tensors), streamed.

    After the backward pass the gradient is copied into the model's own tensors (which are
    rebuilt before the next use anyway), so the dot products hold the model and one ingredient.
    """
    build_mixture(model, ingredients, weights, names)
    model.zero_grad(set_to_none=True)
    loss = lm_loss(model(batch[0]), batch[1])
    loss.backward()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].copy_(params[n].grad)
            params[n].grad = None
        grads = torch.zeros_like(weights)
        for k, ingredient in enumerate(ingredients):
            x = ingredient.load()
            for t, n in enumerate(names):
                grads[k, t] = torch.dot(params[n].flatten(), x[n].flatten().to(params[n])).cpu()
            del x
    return float(loss.detach()), grads


def learned_soup(
    model: nn.Module,
    ingredients: Sequence[Ingredient],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
) -> LearnedResult:
    """Train per-tensor softmax mixing logits on held-out batches; the model ends as the learned soup."""
    names = _float_names(model)
    missing = set(names) - set(dict(model.named_parameters()))
    if missing:
        raise ValueError(f"learned soup mixes parameters only; {sorted(missing)} are buffers")
    alpha = torch.zeros(len(ingredients), len(names), requires_grad=True)  # zeros: starts as the uniform soup
    opt = torch.optim.Adam([alpha], lr=lr)
    model.eval()  # no dropout: the mixture is scored as it will be used
    losses = []
    for _ in range(steps):
        w = alpha.detach().softmax(0)
        loss, dw = mixing_grad(model, ingredients, w, names, next(batches))
        # Softmax Jacobian along the ingredient axis, column by column.
        alpha.grad = w * (dw - (w * dw).sum(0, keepdim=True))
        opt.step()
        losses.append(loss)
    weights = alpha.detach().softmax(0)
    build_mixture(model, ingredients, weights, names)
    return LearnedResult(names=names, weights=weights, losses=losses)


# ----------------------------------------------------------------------------- merges chosen on held-out


def best_scale_merge(
    base: Ingredient,
    members: Sequence[Ingredient],
    method: str,
    options: MergeOptions,
    model: nn.Module,
    evaluate: Evaluate,
) -> tuple[Tensors, float, dict[float, float]]:
    """The merge at the scale with the lowest held-out loss: (tensors, scale, held-out loss per scale)."""
    best, losses = None, {}
    for scale in options.scales:
        tensors = merge(base, members, method, scale, **options.for_method(method))
        model.load_state_dict(tensors)
        losses[scale] = evaluate(model)
        if best is None or losses[scale] < losses[best[1]]:
            best = (tensors, scale)
        del tensors
    return best[0], best[1], losses


# ----------------------------------------------------------------------------- the registry


@dataclass
class Pantry:
    """What a soup method may use. `model` is a work area: its weights are overwritten."""

    ingredients: Sequence[Ingredient]
    scores: list[float]
    """Held-out loss of each ingredient."""
    model: nn.Module
    evaluate: Evaluate
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    """A fresh iterator of held-out training batches (for the learned soup)."""
    options: SoupOptions


@dataclass
class Cooked:
    tensors: Tensors
    weights: list[float]
    """Mean mixing weight of each ingredient (0: not in the soup)."""
    info: dict = field(default_factory=dict)


def _owned(model: nn.Module) -> Tensors:
    """A copy of the model's weights: the work area is overwritten by the next method."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def cook_uniform(p: Pantry) -> Cooked:
    k = len(p.ingredients)
    return Cooked(uniform_soup(p.ingredients), [1 / k] * k)


def cook_greedy(p: Pantry) -> Cooked:
    res = greedy_soup(p.model, p.ingredients, p.scores, p.evaluate)
    weights = [1 / len(res.chosen) if k in res.chosen else 0.0 for k in range(len(p.ingredients))]
    return Cooked(
        _owned(p.model), weights, {"order": res.order, "chosen": res.chosen, "history": res.history}
    )


def cook_learned(p: Pantry) -> Cooked:
    o = p.options
    res = learned_soup(p.model, p.ingredients, p.batches(), o.learned_steps, o.learned_lr)
    per_tensor = {n: res.weights[:, t].tolist() for t, n in enumerate(res.names)}
    return Cooked(
        _owned(p.model), res.weights.mean(1).tolist(), {"per_tensor": per_tensor, "losses": res.losses}
    )


def cook_mwa(p: Pantry) -> Cooked:
    tensors, weights = mwa_soup(p.ingredients, p.scores, p.options.mwa_penalty)
    return Cooked(tensors, weights, {"penalty": p.options.mwa_penalty})


# Explicit registry: soup name -> method over a pantry.
SOUPS: dict[str, Callable[[Pantry], Cooked]] = {
    "uniform": cook_uniform,
    "greedy": cook_greedy,
    "learned": cook_learned,
    "mwa": cook_mwa,
}
