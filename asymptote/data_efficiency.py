"""Data efficiency at a fixed model size: nanoGPT's split with only part of its training text kept,
and how many times that data the standard recipe would need for the same loss.

The split. nanoGPT's protocol cuts one text by position: the first 90% is training text, the last
10% is the split it reports (named `nanogpt_val` in every output). Only the first `fraction` of the
training text is kept, and a validation slice for every choice is cut from the END of the kept text,
so no choice ever reads the reported split. To run the project's flows unchanged, the kept text and
the reported text are written as one derived text whose data.val_fraction and data.test_fraction make
the flows' positional split (asymptote.corpus.positional_split) land exactly on those boundaries:
train = the kept text less its slice, validation = the slice, test = the reported text. The fractions
are floats cut with int(); they are chosen half a byte inside each boundary and checked with the
flows' own split function, and a split that cannot be made exact is refused.

The multiplier. The standard recipe's loss against its unique training tokens D,
L(D) = E + A D^-alpha, is fitted with the seed-aware fitter (asymptote.fits.fit_seed_draws) from the
hierarchical bootstrap draws of its points (asymptote.stats). A model with test loss L trained on
D_used tokens gets D(L) / D_used, its interval pairing draw b of the law with draw b of the model's
loss. A loss at or below the law's asymptote E is out of the standard recipe's reach at any amount of
data: no number, `reachable: false`. A law that is not identified gives no multiplier, with its reason.

Pure: numpy and the project's fits, stats and corpus modules; no torch, Prefect or Ray.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from asymptote import fits, stats
from asymptote.corpus import is_single_text, list_corpus, positional_split, read_text, utf8_cut

REPORTED_SPLIT = "nanogpt_val"
"""The name of the reported split in every output: nanoGPT's validation text, our test split."""
NANOGPT_REPORTED_SHARE = 0.1
"""nanoGPT's shakespeare_char prepare.py: the last 10% of the text is its validation split."""


class SplitError(ValueError):
    """The derived text cannot be split exactly where the protocol says."""


# ----------------------------------------------------------------------------- the split


def read_single_text(source: str, storage_options: dict | None = None) -> str:
    """The whole text of a single text file or builtin; nanoGPT's split is positional, so a corpus of
    documents (a folder, jsonl, parquet) is refused."""
    fs, files = list_corpus(source, storage_options)
    if not is_single_text(files):
        raise ValueError(
            f"data={source!r} is {len(files)} file(s) of documents; nanoGPT's split cuts one text by "
            "position: give a single text file"
        )
    return read_text(fs, files[0])


def exact_fractions(n: int, a: int, b: int) -> tuple[float, float]:
    """(val_fraction, test_fraction) with which positional_split cuts an n-byte text at a and b.

    The split computes int(n * (1 - v - t)) and int(n * (1 - t)); aiming each product half a byte past
    its boundary leaves a margin of 0.5 against float rounding, and the result is checked, not assumed.
    """
    if not 0 < a < b < n:
        raise SplitError(f"boundaries must satisfy 0 < {a} < {b} < {n}: every split needs text")
    t = (n - b - 0.5) / n
    v = 1 - t - (a + 0.5) / n
    if int(n * (1 - v - t)) != a or int(n * (1 - t)) != b or not (v > 0 and t > 0 and v + t < 1):
        raise SplitError(f"no exact fractions for cuts at {a} and {b} of {n} bytes (float precision)")
    return v, t


@dataclass(frozen=True)
class KeptSplit:
    """nanoGPT's split of one text with only the first `fraction` of its training text kept.

    train + val is the kept text (val its last `val_share`); reported is nanoGPT's reported split."""

    fraction: float
    val_share: float
    train: bytes = field(repr=False)
    val: bytes = field(repr=False)
    reported: bytes = field(repr=False)

    @property
    def text(self) -> bytes:
        """The derived text the flows read: kept text, then the reported text."""
        return self.train + self.val + self.reported

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text).hexdigest()[:16]

    def data_fields(self) -> dict[str, float]:
        """DataConfig's val_fraction and test_fraction that split the derived text exactly."""
        v, t = exact_fractions(len(self.text), len(self.train), len(self.train) + len(self.val))
        return {"val_fraction": v, "test_fraction": t}

    def check(self) -> None:
        """Split the derived text with the flows' own function; refuse any byte out of place."""
        d = self.data_fields()
        parts = positional_split(self.text.decode("utf-8"), d["val_fraction"], d["test_fraction"])
        for name, got, want in zip(
            ("train", "val", "test"), parts, (self.train, self.val, self.reported), strict=True
        ):
            if got.encode("utf-8") != want:
                raise SplitError(f"the flows' {name} split is not the intended text ({len(got)} bytes)")

    def write(self, root: Path | str | None = None) -> Path:
        """Write the derived text under the system temp dir (never the repository), named by its hash so
        a run's data key is the same in every session; returns the path."""
        folder = Path(root or tempfile.gettempdir()) / "asymptote-data-efficiency"
        path = folder / f"{self.sha}.txt"
        if not path.exists() or path.read_bytes() != self.text:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(self.text)
            tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        return path

    def sizes(self) -> dict[str, int]:
        """Bytes (= tokens of the byte tokenizer) of each part."""
        kept = len(self.train) + len(self.val)
        return {"kept": kept, "train": len(self.train), "val": len(self.val), "reported": len(self.reported)}


def nanogpt_split(text: str, reported_share: float = NANOGPT_REPORTED_SHARE) -> tuple[bytes, bytes]:
    """(training text, reported text): the cut of bench/parity_nanogpt.py (val_fraction=0.1, no test)."""
    train, reported, _ = positional_split(text, reported_share, 0.0)
    return train.encode("utf-8"), reported.encode("utf-8")


def keep_fraction(
    text: str, fraction: float, val_share: float, reported_share: float = NANOGPT_REPORTED_SHARE
) -> KeptSplit:
    """Keep the first `fraction` of nanoGPT's training text; cut its last `val_share` for validation."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: must lie in (0, 1]")
    if not 0 < val_share < 1:
        raise ValueError(f"val_share={val_share}: must lie in (0, 1)")
    training, reported = nanogpt_split(text, reported_share)
    kept = training[: utf8_cut(training, int(len(training) * fraction))]
    cut = utf8_cut(kept, len(kept) - int(len(kept) * val_share))
    split = KeptSplit(fraction, val_share, kept[:cut], kept[cut:], reported)
    if not split.train or not split.val or not split.reported:
        raise SplitError(f"fraction={fraction} of a {len(text)}-character text leaves an empty split")
    split.check()
    return split


# ----------------------------------------------------------------------------- choices on validation


@dataclass(frozen=True)
class Choice:
    """The grid point with the lowest validation loss, and the axes on which it sits at an edge."""

    lr: float
    epochs: float
    val_loss: float
    at_edge: tuple[str, ...]


def choose(val: Mapping[tuple[float, float], float]) -> Choice:
    """Lowest validation loss over a full (lr, epochs) grid; an edge choice is named, not hidden."""
    if not val:
        raise ValueError("choose: no grid points")
    (lr, epochs), loss = min(val.items(), key=lambda kv: (kv[1], kv[0]))
    lrs, eps = sorted({k[0] for k in val}), sorted({k[1] for k in val})
    edges = tuple(
        axis
        for axis, v, grid in (("lr", lr, lrs), ("epochs", epochs, eps))
        if len(grid) > 1 and v in (grid[0], grid[-1])
    )
    return Choice(lr, epochs, float(loss), edges)


# ----------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class LossFigure:
    """A test loss over seeds: the mean, and the hierarchical bootstrap's interval."""

    estimate: float
    ci: tuple[float, float]

    def beats(self, reference: float) -> bool:
        """Below the reference, the whole interval included."""
        return self.estimate < reference and self.ci[1] < reference

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "ci": list(self.ci)}


def loss_figures(
    arms: Mapping[str, Sequence[np.ndarray]], n_boot: int, seed: int = 0, level: float = 0.95
) -> tuple[dict[str, LossFigure], dict[str, np.ndarray]]:
    """Every arm's figure and its draws from ONE bootstrap (seeds, then the windows of the reported
    split, which every arm shares), so draw b of any two arms saw the same windows."""
    draws = stats.resample(arms, n_boot=n_boot, seed=seed)
    points = stats.point(arms)
    figs = {}
    for name, d in draws.items():
        f = stats.figure(points[name], d, level=level)
        figs[name] = LossFigure(f["estimate"], (f["ci"][0], f["ci"][1]))
    return figs, draws


# ----------------------------------------------------------------------------- the standard law


@dataclass
class StandardLaw:
    """L(D) = E + A D^-alpha of the standard recipe; `fit` None when it could not be fitted."""

    tokens: list[int]
    losses: list[float]
    fit: fits.SeedFit | None
    reason: str = ""

    @property
    def identified(self) -> bool:
        return self.fit is not None and self.fit.identified

    def to_dict(self) -> dict:
        f = self.fit
        params = {k: (None if f is None else float(getattr(f.law, k))) for k in fits.PARAMS}
        ci = {} if f is None else {k: [_finite(v) for v in f.ci[k]] for k in fits.PARAMS}
        return params | {
            "ci": ci,
            "identified": self.identified,
            "reason": self.reason,
            "tokens": self.tokens,
            "losses": self.losses,
        }


def fit_law(
    tokens: Sequence[int], losses: Sequence[float], draws: np.ndarray, level: float = 0.95
) -> StandardLaw:
    """Fit the law to the points' mean test losses; `draws` (B, n) are their bootstrap draws, whose
    deviations from the means are the noise each bootstrap refit adds (fits.fit_seed_draws)."""
    draws = np.asarray(draws, dtype=float)
    y = np.asarray(losses, dtype=float)
    try:
        f = fits.fit_seed_draws(tokens, y, draws - y[None, :], level=level, what="standard L(D)")
    except fits.FitError as err:
        return StandardLaw(list(tokens), y.tolist(), None, str(err))
    return StandardLaw(list(tokens), y.tolist(), f, f.reason)


@dataclass(frozen=True)
class DataMultiplier:
    """D(loss) / D_used under the standard law: None where the law gives no finite number (and why)."""

    estimate: float | None
    ci: tuple[float | None, float | None]
    reachable: bool | None
    """False: the loss is at or below the law's asymptote; None: no identified law to ask."""
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "ci": list(self.ci),
            "reachable": self.reachable,
            "reason": self.reason,
        }


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None  # JSON has no infinity: None reads "unbounded"


def data_multiplier(
    law: StandardLaw, loss: float, loss_draws: np.ndarray, tokens_used: int
) -> DataMultiplier:
    """How many times `tokens_used` the standard recipe needs to reach `loss`; the interval pairs law
    draw b with loss draw b (both from one bootstrap), an unreachable draw counting as infinite."""
    if not law.identified:
        return DataMultiplier(None, (None, None), None, f"the standard law is not identified: {law.reason}")
    loss_draws = np.asarray(loss_draws, dtype=float)
    if len(loss_draws) != len(law.fit.samples):
        raise ValueError(
            f"{len(loss_draws)} loss draws for {len(law.fit.samples)} law draws: pair draws of one bootstrap"
        )
    m = fits.data_multiplier(law.fit, loss, tokens_used, target_samples=loss_draws)
    ci = (_finite(m.ci[0]), _finite(m.ci[1]))
    if not m.reachable:
        why = f"loss {loss:.4f} is at or below the standard law's asymptote E = {law.fit.law.E:.4f}"
        return DataMultiplier(None, ci, False, why + ": no amount of data reaches it by the standard recipe")
    return DataMultiplier(float(m.value), ci, True)
