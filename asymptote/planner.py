"""The planner: from a scaling study's fitted laws to a training plan for a token count and a compute budget.

A study measures, at one token budget D, the test loss of each recipe's certified optimum at a few
sizes N (seed replicas) and of K-member ensembles. Each *option* below has one law L(N) = A/N^alpha + E
fitted to its seed means and bootstrapped from the study's seed noise exactly as the study's own fits:

    standard       one model, weight decay fixed (the study's standard recipe)
    regularized    one model, weight decay tuned
    ensemble-k     k members at the member recipe (epochs x epoch_factor, WD x weight_decay_factor)

An option's cost is train FLOPs per token (counted from the study's shapes, interpolated as a power of
N) x tokens x epochs x members; its settings (lr, weight decay, epochs) come from the certified
optimum of the nearest fitted size (the search is on a grid, so they are not interpolated). Since
every fitted law falls in N, the best plan for a budget is, per option, the largest N it can afford,
and then the option with the lowest predicted loss. The inverse question inverts each law.

What the fits cover: N between the smallest and largest fitted size, k up to the K measured, tokens
between the smallest and largest budget of the study's L(D) fit (only D itself without one). Outside
that the planner refuses (`OutOfRange`) unless asked to extrapolate, and then every answer says which
fit it extrapolates and how far. A law that is not identified (as many parameters as points, a
parameter at its bound) is never the basis of a plan, inside the fitted range or out: every answer
names each option it could not evaluate and why (`unevaluated`), and a question no identified law
can answer is refused with those reasons. A token count other than D shifts every option by L_D(T) - L_D(D),
the standard recipe's fitted data law (an assumption the answer states). Intervals are percentiles of
the bootstrap draws plus, for a prediction of a measured loss, the noise of the mean of `seeds` runs;
an interval that misses its own point estimate (a biased bootstrap) is widened to reach it, and the
answer says so. Pure numpy/pydantic: no torch, Prefect or Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from asymptote.fits import FitError, PowerLaw, SeedFit, fit_seed_draws, interval, seed_mean_noise
from asymptote.flops import train_flops_per_token
from asymptote.scaling_analysis import Noise, standard_data_fit
from asymptote.scaling_config import FitConfig, StudyData
from asymptote.store import Store, layout

SINGLE = ("standard", "regularized")


class OutOfRange(ValueError):
    """A question outside what the fits cover, asked without extrapolate=True."""


# ----------------------------------------------------------------------------- inputs


class SizeDesign(BaseModel):
    """One fitted size: its parameters, its train FLOPs per token, each recipe's certified settings."""

    label: str
    params: int
    flops_per_token: float
    """Forward + backward FLOPs per trained token (asymptote.flops.train_flops_per_token)."""
    recipes: dict[str, dict[str, float]]
    """recipe -> {lr, weight_decay, epochs} of its certified optimum at the study's budget."""


class Design(BaseModel):
    """What a study ran, beyond its measured losses: what the planner needs to cost and configure a plan."""

    tokens: int
    """The study's token budget D (every L(N) law is at D)."""
    sizes: list[SizeDesign]
    members: int
    """K: members per size that were measured."""
    epoch_factor: float = 2.0
    weight_decay_factor: float = 0.5


class PlanInputs(BaseModel):
    """Everything the planner reads: a study's measurements, its design and how fits are bootstrapped."""

    study: StudyData
    design: Design
    fits: FitConfig = Field(default_factory=FitConfig)


# ----------------------------------------------------------------------------- answers


class Prediction(BaseModel):
    """A plan and what it should buy: the option, its size and settings, its cost and its test loss."""

    option: str
    members: int
    params: float
    tokens: int
    lr: float
    weight_decay: float
    epochs: float
    settings_from: str
    """The fitted size whose certified settings are used (the nearest in log N)."""
    flops: float
    loss: float
    """Predicted test loss (mean over seeds) at the study's test split's distribution."""
    loss_ci: list[float]
    """Interval for the mean test loss of `seeds` runs (law draws + seed noise)."""
    law_ci: list[float]
    """Interval for the law's value alone (the expected loss, no seed noise)."""
    level: float
    seeds: int
    fits: list[str]
    """The fits the prediction reads."""
    extrapolations: list[str] = Field(default_factory=list)
    """Where it leaves what the fits cover, and how far ([] inside)."""
    notes: list[str] = Field(default_factory=list)
    basis_identified: bool = True
    """Whether the law the plan rests on is identified (always, from this planner: asymptote.report_check
    holds any plan to it)."""
    unevaluated: dict[str, str] = Field(default_factory=dict)
    """Every option the answer could not evaluate -> why (not fitted, not identified, not affordable)."""

    def lines(self) -> list[str]:
        ens = f" x {self.members} members" if self.members > 1 else ""
        lo, hi = self.loss_ci
        return [
            f"{self.option}: N = {self.params:,.0f} parameters{ens}, lr {self.lr:g}, weight decay "
            f"{self.weight_decay:g}, {self.epochs:g} epochs over {self.tokens:,} tokens "
            f"(settings of the certified optimum at {self.settings_from})",
            f"compute {self.flops:.3g} FLOPs; predicted test loss {self.loss:.4f} "
            f"[{lo:.4f}, {hi:.4f}] ({self.level:.0%}, mean of {self.seeds} run(s))",
            f"fits: {', '.join(self.fits)}",
            *[f"EXTRAPOLATES: {e}" for e in self.extrapolations],
            *[f"note: {n}" for n in self.notes],
            *[f"not evaluated: {name}: {why}" for name, why in self.unevaluated.items()],
        ]


class BudgetAnswer(BaseModel):
    """The cheapest plan predicted to reach a target loss, and the compute it needs with an interval."""

    target: float
    plan: Prediction
    flops: float
    flops_ci: list[float | None]
    """Interval of the compute (None: unbounded, the target is below some draws' asymptote)."""
    level: float

    def lines(self) -> list[str]:
        lo, hi = (f"{v:.3g}" if v is not None else "unbounded" for v in self.flops_ci)
        return [
            f"target test loss {self.target:.4f} needs {self.flops:.3g} FLOPs [{lo}, {hi}] ({self.level:.0%})",
            *self.plan.lines(),
        ]


# ----------------------------------------------------------------------------- the laws


@dataclass
class Option:
    """One way to spend compute: a fitted law L(N) and how its runs are configured."""

    name: str
    members: int
    fit: SeedFit
    fit_name: str
    recipe: str  # whose certified settings it uses
    epoch_factor: float = 1.0
    weight_decay_factor: float = 1.0


def _option_fits(inputs: PlanInputs) -> tuple[list[Option], dict[str, str]]:
    """(options whose law could be fitted, option -> why the others could not be)."""
    data, design = inputs.study, inputs.design
    noise = Noise(data, inputs.fits)
    if noise.sd is None:
        raise FitError("the study has no seed replicas: the planner's intervals need >= 2 seeds")
    params = [s.params for s in data.sizes]
    out, failed = [], {}
    for recipe in SINGLE:
        groups = [getattr(s, recipe) for s in data.sizes]
        y = [float(np.mean(g)) for g in groups]
        draws = noise.means([len(g) for g in groups])
        fit = _try(lambda y=y, d=draws, r=recipe: fit_seed_draws(params, y, d, what=r), failed, recipe)
        out += [Option(recipe, 1, f, f"{recipe}_N", recipe) for f in fit]
    curves = [noise.curve(s) for s in data.sizes]
    measured = min((len(c) for c, _, _ in curves), default=0)
    for k in range(2, measured + 1):  # (curve, draws, how drawn)
        y = [c[k - 1] for c, _, _ in curves]
        # the curve's draws are values; a fit bootstraps from errors (as scaling_analysis' L(K) fits do)
        draws = np.stack([d[:, k - 1] - c[k - 1] for c, d, _ in curves], axis=1)
        name = f"ensemble-{k}"
        fit = _try(lambda y=y, d=draws, n=name: fit_seed_draws(params, y, d, what=n), failed, name)
        f, w = design.epoch_factor, design.weight_decay_factor
        out += [Option(name, k, s, f"{name}_N", "regularized", f, w) for s in fit]
    failed[f"ensemble-{max(measured, 1) + 1}+"] = (
        f"not measured: the study's ensembles go up to K = {measured} members at every size"
        if measured >= 2
        else "not measured: the study has no ensembles of 2 or more members at every size"
    )
    return out, failed


def _try(make, failed: dict[str, str] | None = None, name: str = "") -> list:
    try:
        return [make()]
    except FitError as err:
        if failed is not None:
            failed[name] = f"no law could be fitted: {err}"
        return []


def _contain(estimate: float, ci, what: str) -> tuple[list, list[str]]:
    """The interval, widened to reach its own estimate when the bootstrap's percentiles miss it (the
    refits are biased, e.g. piled at a bound); an estimate outside its printed interval contradicts
    itself. None (unbounded) ends stay unbounded. Returns (interval, notes)."""
    lo, hi = ci
    if (lo is None or lo <= estimate) and (hi is None or estimate <= hi):
        return [lo, hi], []
    new = [estimate if lo is None else min(lo, estimate), estimate if hi is None else max(hi, estimate)]
    if lo is None:
        new[0] = None
    if hi is None:
        new[1] = None
    note = (
        f"{what}: the bootstrap's interval [{_num(lo)}, {_num(hi)}] missed the point estimate {estimate:.4g} "
        "(its refits are biased), so it is widened to reach it"
    )
    return new, [note]


def _num(v: float | None) -> str:
    return "unbounded" if v is None else f"{v:.4g}"


def _draws(law_samples: np.ndarray, n: float) -> np.ndarray:
    a, alpha, e = law_samples.T
    return a * float(n) ** -alpha + e


# ----------------------------------------------------------------------------- the planner


class Planner:
    """Answers planning questions from one study's fits. Build once (it fits and bootstraps), ask many."""

    def __init__(self, inputs: PlanInputs):
        self.inputs, self.design, self.cfg = inputs, inputs.design, inputs.fits
        fitted, failed = _option_fits(inputs)
        self.options = {o.name: o for o in fitted}
        if not self.options:
            raise FitError(
                "no law could be fitted: the planner needs >= 3 sizes with seed replicas ("
                + "; ".join(f"{k}: {v}" for k, v in failed.items())
                + ")"
            )
        # what no plan may rest on: options without a law, and laws that are not identified
        unusable = failed | {
            o.name: f"{o.fit_name} is not identified: {o.fit.reason}" for o in fitted if not o.fit.identified
        }
        self.unusable = dict(
            sorted(unusable.items(), key=lambda kv: kv[0].endswith("+"))
        )  # unmeasured K last
        self.usable = {o.name: o for o in fitted if o.fit.identified}
        self.noise = Noise(inputs.study, inputs.fits)
        self.params = np.array([s.params for s in self.design.sizes], dtype=float)
        self.lo, self.hi = float(self.params.min()), float(self.params.max())
        logp = np.log(self.params)
        self._fpt = np.polyfit(logp, np.log([s.flops_per_token for s in self.design.sizes]), 1)
        self.data_fit = self._data_fit()

    # --- pieces

    def _data_fit(self) -> SeedFit | None:
        """The standard recipe's identified L(D) over the study's budgets (None with fewer than 3, or
        when it is not identified: `data_fit_reason` says why)."""
        budgets = len(self.inputs.study.efficiency)
        self.data_fit_reason = f"{budgets} token budget(s): L(D) needs >= 3"
        if budgets < 3:
            return None
        failed: dict[str, str] = {}
        fit = _try(lambda: standard_data_fit(self.inputs.study, self.noise), failed, "standard_D")
        if fit and not fit[0].identified:  # no shift along a law that is not identified
            failed["standard_D"] = f"standard_D is not identified: {fit[0].reason}"
        self.data_fit_reason = failed.get("standard_D", "")
        return fit[0] if fit and fit[0].identified else None

    def flops_per_token(self, n: float) -> float:
        """Train FLOPs per token of a shape with n parameters: a power of n fitted to the study's shapes."""
        return float(np.exp(np.polyval(self._fpt, math.log(n))))

    def nearest(self, n: float):
        """The fitted size nearest to n in log N (whose certified settings a plan at n uses)."""
        i = int(np.argmin(np.abs(np.log(self.params) - math.log(n))))
        return self.design.sizes[i]

    def settings(self, option: Option, n: float) -> dict[str, float]:
        s = self.nearest(n).recipes[option.recipe]
        return {
            "lr": s["lr"],
            "weight_decay": s["weight_decay"] * option.weight_decay_factor,
            "epochs": s["epochs"] * option.epoch_factor,
        }

    def cost(self, option: Option, n: float, tokens: int) -> float:
        """Train FLOPs of the plan: per-token FLOPs x tokens x epochs x members."""
        return self.flops_per_token(n) * tokens * self.settings(option, n)["epochs"] * option.members

    def _option(self, name: str | None, single_only: bool) -> tuple[list[Option], dict[str, str]]:
        """(the options a question may rest on, option -> why the others cannot be evaluated); refused
        when none is left, naming every option and why."""
        if name is not None:
            if name in self.unusable:
                raise OutOfRange(f"refused: option {name!r} cannot be planned from: {self.unusable[name]}")
            if name not in self.usable:
                raise OutOfRange(f"no fit for option {name!r}; fitted: {', '.join(self.options)}")
            return [self.usable[name]], {}
        kept = [o for o in self.usable.values() if o.members == 1 or not single_only]
        if not kept:
            raise OutOfRange(f"refused: no identified law to plan from ({self._why_not(self.unusable)})")
        return kept, dict(self.unusable)

    @staticmethod
    def _why_not(skipped: dict[str, str]) -> str:
        return "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no option"

    # --- coverage

    def token_range(self) -> tuple[int, int]:
        if self.data_fit is None:
            return self.design.tokens, self.design.tokens
        return int(min(self.data_fit.x)), int(max(self.data_fit.x))

    def _check_tokens(self, tokens: int, extrapolate: bool) -> list[str]:
        lo, hi = self.token_range()
        if lo <= tokens <= hi:
            return []
        what = (
            f"tokens {tokens:,} are outside the budgets the data law L(D) covers ({lo:,}..{hi:,})"
            if self.data_fit is not None
            else f"the fits are at {self.design.tokens:,} tokens only (the study has no identified L(D) fit: "
            f"{self.data_fit_reason})"
        )
        if not extrapolate or self.data_fit is None:
            why = "" if self.data_fit is not None else "; there is no L(D) fit to extrapolate with"
            raise OutOfRange(f"refused: {what}{why}. Pass extrapolate (--extrapolate) to plan beyond them.")
        far = tokens / hi if tokens > hi else lo / tokens
        side = "beyond the largest" if tokens > hi else "below the smallest"
        return [f"standard_D: tokens {tokens:,} are {far:.2g}x {side} budget fitted"]

    def _size_note(self, n: float) -> str:
        if n > self.hi:
            return f"N is {n / self.hi:.2g}x beyond the largest size fitted ({self.hi:,.0f})"
        return f"N is {self.lo / n:.2g}x below the smallest size fitted ({self.lo:,.0f})"

    def _shift(self, tokens: int) -> tuple[float, np.ndarray]:
        """L_D(tokens) - L_D(D): point and draws (zero at the study's own budget)."""
        b = self.cfg.n_boot
        if tokens == self.design.tokens or self.data_fit is None:
            return 0.0, np.zeros(b)
        f = self.data_fit
        point = float(f.law(tokens) - f.law(self.design.tokens))
        return point, _draws(f.samples, tokens) - _draws(f.samples, self.design.tokens)

    # --- questions

    def predict(
        self,
        params: float,
        tokens: int | None = None,
        option: str | None = None,
        seeds: int = 1,
        extrapolate: bool = False,
        single_only: bool = False,
    ) -> Prediction:
        """What loss a model of `params` parameters reaches (the best fitted option unless one is named)."""
        tokens = tokens or self.design.tokens
        extra = self._check_tokens(tokens, extrapolate)
        if not self.lo <= params <= self.hi:
            if not extrapolate:
                raise OutOfRange(
                    f"refused: {self._size_note(params)}; the fits cover N in [{self.lo:,.0f}, {self.hi:,.0f}]. "
                    "Pass extrapolate (--extrapolate) to plan beyond them."
                )
            extra = extra + [self._size_note(params)]
        options, skipped = self._option(option, single_only)
        preds = [self._at(o, params, tokens, seeds, extra, skipped) for o in options]
        return min(preds, key=lambda p: p.loss)

    def _at(
        self, o: Option, n: float, tokens: int, seeds: int, extra: list[str], skipped: dict[str, str]
    ) -> Prediction:
        shift, shift_draws = self._shift(tokens)
        law = _draws(o.fit.samples, n) + shift_draws[: len(o.fit.samples)]
        noisy = law + self._seed_noise(seeds)[: len(law)]
        fits = [o.fit_name] + (["standard_D"] if tokens != self.design.tokens else [])
        notes = []
        if tokens != self.design.tokens:
            notes.append(
                f"loss shifted by L_D({tokens:,}) - L_D({self.design.tokens:,}) = {shift:+.4f}: the standard "
                "recipe's data law, assumed to move every option alike"
            )
        estimate = float(o.fit.law(n)) + shift
        loss_ci, widened = _contain(estimate, interval(noisy, self.cfg.level), "predicted test loss")
        law_ci, law_widened = _contain(estimate, interval(law, self.cfg.level), "the law's value")
        s = self.settings(o, n)
        return Prediction(
            option=o.name,
            members=o.members,
            params=float(n),
            tokens=tokens,
            lr=s["lr"],
            weight_decay=s["weight_decay"],
            epochs=s["epochs"],
            settings_from=self.nearest(n).label,
            flops=self.cost(o, n, tokens),
            loss=estimate,
            loss_ci=loss_ci,
            law_ci=law_ci,
            level=self.cfg.level,
            seeds=seeds,
            fits=fits,
            extrapolations=[e.replace("N is", f"{o.fit_name}: N is") for e in extra],
            notes=notes + widened + law_widened,
            basis_identified=o.fit.identified,
            unevaluated={k: v for k, v in skipped.items() if k != o.name},
        )

    def _seed_noise(self, seeds: int) -> np.ndarray:
        """Draws of the error of a mean of `seeds` runs, from the study's pooled seed deviations; seeded
        per question, so the same question gets the same interval whatever was asked before."""
        rng = np.random.default_rng([self.cfg.seed, seeds])
        return seed_mean_noise([seeds], self.noise.pool, self.cfg.n_boot, rng)[:, 0]

    def affordable(self, option: Option, flops: float, tokens: int) -> float:
        """The largest N whose plan costs at most `flops` (0 if none): per stretch of N that shares one
        fitted size's settings, the cost is a power of N, solved exactly."""
        b, a = self._fpt
        cuts = np.sqrt(self.params[:-1] * self.params[1:]) if len(self.params) > 1 else np.zeros(0)
        edges = [0.0, *sorted(cuts.tolist()), math.inf]
        best = 0.0
        for left, right in zip(edges, edges[1:], strict=False):
            mid = math.sqrt(max(left, 1.0) * (right if math.isfinite(right) else max(left, 1.0) * 4))
            per_n = tokens * self.settings(option, mid)["epochs"] * option.members
            n = math.exp((math.log(flops / per_n) - a) / b)  # flops_per_token(n) * per_n = flops
            if n > left:
                best = max(best, min(n, right))
        return best

    def recommend(self, flops: float, tokens: int, seeds: int = 1, extrapolate: bool = False) -> Prediction:
        """What loss this budget buys: per option the largest affordable N, then the lowest predicted loss."""
        if flops <= 0:
            raise OutOfRange(f"refused: a compute budget must be positive, got {flops:g} FLOPs")
        extra = self._check_tokens(tokens, extrapolate)
        options, skipped = self._option(None, single_only=False)
        lo_cost = min(self.cost(o, self.lo, tokens) for o in options)
        hi_cost = max(self.cost(o, self.hi, tokens) for o in options)
        if not extrapolate and not lo_cost <= flops <= hi_cost:
            side = "below the cheapest" if flops < lo_cost else "above the most expensive"
            raise OutOfRange(
                f"refused: {flops:.3g} FLOPs is {side} plan the identified fits cover at {tokens:,} tokens "
                f"({lo_cost:.3g}..{hi_cost:.3g} FLOPs: sizes {self.lo:,.0f}..{self.hi:,.0f}, K up to "
                f"{self.design.members}). Pass extrapolate (--extrapolate) to plan beyond them."
                + (f" Not evaluated: {self._why_not(skipped)}." if skipped else "")
            )
        found = []
        for o in options:
            n = self.affordable(o, flops, tokens)
            if not extrapolate:
                n = min(n, self.hi)
            if n < self.lo and (not extrapolate or n <= 0):
                skipped[o.name] = (
                    f"{flops:.3g} FLOPs does not afford its smallest fitted size ({self.lo:,.0f}) "
                    f"at {tokens:,} tokens"
                )
                continue
            found.append((o, n))
        preds = []
        for o, n in found:
            note = [] if self.lo <= n <= self.hi else [self._size_note(n)]
            preds.append(self._at(o, n, tokens, seeds, extra + note, skipped))
        if not preds:
            raise OutOfRange(f"refused: {flops:.3g} FLOPs buys no plan ({self._why_not(skipped)})")
        return min(preds, key=lambda p: p.loss)

    def budget_for(self, loss: float, tokens: int, extrapolate: bool = False) -> BudgetAnswer:
        """What budget this loss needs: per option the N where its law reaches `loss`, then the cheapest."""
        extra = self._check_tokens(tokens, extrapolate)
        shift, shift_draws = self._shift(tokens)
        options, skipped = self._option(None, single_only=False)
        answers = []
        for o in options:
            n = o.fit.law.inverse(loss - shift)
            if not math.isfinite(n):
                skipped[o.name] = f"the target is at or below its asymptote {o.fit.law.E + shift:.4f}"
                continue
            if not self.lo <= n <= self.hi and not extrapolate:
                skipped[o.name] = f"it reaches the target where {self._size_note(n)}"
                continue
            answers.append((self.cost(o, n, tokens), o, n, shift_draws))
        if not answers:
            hint = "" if extrapolate else " Pass extrapolate (--extrapolate) to plan beyond the fitted sizes."
            raise OutOfRange(
                f"refused: no identified option reaches loss {loss:.4f} ({self._why_not(skipped)}).{hint}"
            )
        flops, o, n, sd = min(answers, key=lambda a: a[0])
        note = [] if self.lo <= n <= self.hi else [self._size_note(n)]
        draws = np.array(
            [
                self.cost(o, PowerLaw(*s).inverse(loss - d), tokens) if _reachable(s, loss - d) else math.inf
                for s, d in zip(o.fit.samples, sd, strict=False)
            ]
        )
        ci = [v if math.isfinite(v) else None for v in interval(draws, self.cfg.level)]
        ci, widened = _contain(flops, ci, "compute")
        plan = self._at(o, n, tokens, 1, extra + note, skipped)
        plan.notes += widened
        return BudgetAnswer(target=loss, plan=plan, flops=flops, flops_ci=ci, level=self.cfg.level)


def _reachable(sample: np.ndarray, loss: float) -> bool:
    return math.isfinite(PowerLaw(*sample).inverse(loss))


def gpu_hours_to_flops(hours: float, flops_per_second: float, gpus: int = 1) -> float:
    """A budget in GPU-hours at a stated sustained throughput (FLOP/s per GPU), in FLOPs."""
    if hours <= 0 or flops_per_second <= 0 or gpus < 1:
        raise OutOfRange(
            f"gpu hours ({hours}), throughput ({flops_per_second}) and gpus ({gpus}) must be positive"
        )
    return hours * 3600.0 * flops_per_second * gpus


# ----------------------------------------------------------------------------- from a study


def design_of(config, searches, params: dict[str, int]) -> Design:
    """A study's design from its config (ScalingStudyConfig), its search rows (size, recipe, budget,
    best) and each size's parameter count."""
    best = {(r.size, r.recipe): r.best for r in searches if r.budget == config.tokens}
    sizes = [
        SizeDesign(
            label=label,
            params=params[label],
            flops_per_token=train_flops_per_token(model),
            recipes={r: dict(best[(label, r)]) for r in SINGLE if (label, r) in best},
        )
        for model, label in zip(config.sizes, config.labels, strict=True)
    ]
    e = config.ensemble
    return Design(
        tokens=config.tokens,
        sizes=sizes,
        members=e.members,
        epoch_factor=e.epoch_factor,
        weight_decay_factor=e.weight_decay_factor,
    )


def studies(store: Store) -> list[str]:
    """Keys of the scaling studies in a store (reports/scaling/<key>) that record a design, newest first."""
    found = []
    for key in store.ls(layout("report", flow="scaling", key="")):
        rel = layout("report", flow="scaling", key=key)
        if store.has(rel):
            found.append((store.manifest(rel).created, key))
    return [k for _, k in sorted(found, reverse=True)]


def load_inputs(store: Store, key: str | None = None) -> PlanInputs:
    """The planner's inputs from a study's study.json (the newest study when no key is given)."""
    keys = [key] if key else studies(store)
    if not keys:
        raise OutOfRange(f"no scaling study in {store.uri()}: run `asymptote scaling` first")
    doc = store.read_json(layout("report", flow="scaling", key=keys[0]), "study.json")
    if "design" not in doc:
        raise OutOfRange(
            f"study {keys[0]} predates recorded designs (sizes' FLOPs and certified settings); "
            "rerun `asymptote scaling` with the same recipe on this store to record one"
        )
    return PlanInputs(study=doc["study"], design=doc["design"], fits=doc.get("fit_config", {}))
