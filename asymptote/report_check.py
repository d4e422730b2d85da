"""A report that cannot contradict itself: checks over any result object and any rendered report.

`check(obj)` walks a result (pydantic models, dataclasses, dicts, lists, numbers) and returns one
line per problem ([] when consistent):

- an estimate outside its own interval: in one dict, `ci` against `estimate` / `value` / `point` /
  `mean` (or, for a per-parameter `ci` dict, each named parameter: a fit's {"E", "ci": {"E": ...}}),
  `<name>_ci` against `<name>` or `<name>_loss` (`law_ci` against `loss`; name by name when both are
  dicts, as the ladder's {"test_loss": {rung: ...}, "test_ci": {rung: [...]}}), and a table row's
  `ci_low` / `ci_high`.
  A None end is unbounded. A dict that says `identified: false` claims nothing and is skipped;
- something plotted from a value that was not fitted: each entry of a `plotted` list
  ({"plot", "what", "fit", "value", "identified"}, as asymptote.scaling_plots returns them) must be an
  identified fit with a finite value, and, where the same document holds the fits
  (`analysis.fits`), that fit must have been made, be identified and have that value;
- a plan (a dict with `option`, `loss` and `loss_ci`: asymptote.planner.Prediction) whose basis law is
  not identified, or that does not name the options it could not evaluate (`unevaluated`);
- a split by a name that is not its own. Results name their split explicitly in a `split` field:
  "train", "validation" or "test" (the corpus's own splits), or "<one of those>/<part>" for a part a
  method carved out (e.g. "validation/second-half"), either optionally followed by a description in
  parentheses ("validation (not held-out)"). "test" means the corpus's test split and
  nothing else, so a dict whose split is not "test" must not label its figures `test` / `test_*`.

`check_text(text)` reads rendered text (a report's markdown, `asymptote plan`'s lines): every inline
"estimate [low, high]" and every table row with an estimate column beside an interval column.
`check_report(markdown, files)` and `check_report_dir(path)` check a rendered report: its markdown
and every JSON file beside it. Pure: no torch, Prefect or Ray.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
ESTIMATES = ("estimate", "value", "point", "mean")
TOLERANCE = 1e-9  # relative: rounding, not contradiction


# ----------------------------------------------------------------------------- objects


def check(obj: Any) -> list[str]:
    """Every contradiction in a result object (see the module's docstring); [] when it is consistent."""
    doc = plain(obj)
    problems: list[str] = []
    _walk(doc, "$", problems, _fits_index(doc))
    return problems


def plain(obj: Any) -> Any:
    """The object as JSON-like data: pydantic models dumped, dataclasses as dicts, tuples as lists."""
    if hasattr(obj, "model_dump"):
        return plain(obj.model_dump())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return plain(obj.tolist())
    return obj


def _walk(node: Any, path: str, problems: list[str], fits: dict[str, dict]) -> None:
    if isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, f"{path}[{i}]", problems, fits)
        return
    if not isinstance(node, dict):
        return
    if node.get("identified") is not False:  # an unidentified figure claims nothing
        problems += _intervals(node, path)
    if _is_plan(node):
        problems += _plan(node, path, fits)
    if "split" in node:
        problems += _split(node, path)
    plotted = node.get("plotted")
    if isinstance(plotted, list):
        problems += _plotted(plotted, f"{path}.plotted", fits)
    for k, v in node.items():
        _walk(v, f"{path}.{k}", problems, fits)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _outside(estimate: float, lo: float | None, hi: float | None) -> bool:
    slack = TOLERANCE * max(1.0, abs(estimate))
    return (lo is not None and estimate < lo - slack) or (hi is not None and estimate > hi + slack)


def _pair(estimate: Any, ci: Any, what: str) -> list[str]:
    """One estimate against one interval [lo, hi] (None ends: unbounded)."""
    est = _number(estimate)
    if est is None or not isinstance(ci, list) or len(ci) != 2:
        return []
    lo, hi = (_number(v) for v in ci)
    out = []
    if lo is not None and hi is not None and lo > hi:
        out.append(f"{what}: interval [{lo:.6g}, {hi:.6g}] is reversed")
    if math.isfinite(est) and _outside(est, lo, hi):
        out.append(f"{what}: estimate {est:.6g} lies outside its own interval {_show(ci)}")
    return out


def _show(ci: list) -> str:
    return "[" + ", ".join("unbounded" if v is None else f"{v:.6g}" for v in ci) + "]"


def _intervals(node: dict, path: str) -> list[str]:
    out = []
    for key, ci in node.items():
        if key == "ci":
            if isinstance(ci, dict):  # per-parameter intervals of a fit: {"E": [lo, hi], "alpha": ...}
                for name, sub in ci.items():
                    out += _pair(node.get(name), sub, f"{path}.{name}")
                continue
            est = next((k for k in ESTIMATES if _number(node.get(k)) is not None), None)
            if est is not None:
                out += _pair(node[est], ci, f"{path}.{est}")
        elif key.endswith("_ci"):
            base = key[: -len("_ci")]
            names = (base, f"{base}_loss") + (("loss",) if base == "law" else ())
            est = next((n for n in names if n in node), None)
            if est is None:
                continue
            if isinstance(ci, dict) and isinstance(node[est], dict):  # per name: {"single": [lo, hi]}
                for name, sub in ci.items():
                    out += _pair(node[est].get(name), sub, f"{path}.{est}.{name} ({key})")
            else:
                out += _pair(node[est], ci, f"{path}.{est} ({key})")
    if "ci_low" in node or "ci_high" in node:
        est = next((k for k in ESTIMATES if _number(node.get(k)) is not None), None)
        if est is not None:
            out += _pair(node[est], [node.get("ci_low"), node.get("ci_high")], f"{path}.{est}")
    return out


def _fits_index(doc: Any) -> dict[str, dict]:
    """The fits a document holds (a scaling study's `analysis.fits`: name -> {ok, params}), if any."""
    if isinstance(doc, dict):
        analysis = doc.get("analysis")
        if isinstance(analysis, dict) and isinstance(analysis.get("fits"), dict):
            return analysis["fits"]
    return {}


def _fit_identified(fit: dict) -> bool:
    return bool(fit.get("ok")) and bool(fit.get("params", {}).get("identified", True))


def _plotted(entries: list, path: str, fits: dict[str, dict]) -> list[str]:
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue
        where = f"{path}[{i}] ({e.get('plot', '?')}: {e.get('what', '?')} of {e.get('fit', '?')})"
        value = _number(e.get("value"))
        if not e.get("identified") or value is None or not math.isfinite(value):
            out.append(f"{where}: plotted from a value that was not fitted and identified")
            continue
        fit = fits.get(e.get("fit", ""))
        if fits and fit is None:
            out.append(f"{where}: plotted, but the document has no fit of that name")
        elif fit is not None and not _fit_identified(fit):
            out.append(f"{where}: plotted, but that fit is not identified")
        elif fit is not None:
            fitted = _number(fit.get("params", {}).get("E"))
            if fitted is None or abs(fitted - value) > TOLERANCE * max(1.0, abs(fitted)):
                out.append(f"{where}: plotted at {value:.6g}, but the fit's asymptote is {fitted}")
    return out


def _is_plan(node: dict) -> bool:
    return "option" in node and "loss" in node and "loss_ci" in node


def _plan(node: dict, path: str, fits: dict[str, dict]) -> list[str]:
    out = []
    option = node.get("option")
    if node.get("basis_identified") is False:
        out.append(f"{path}: the plan ({option}) rests on a law that is not identified")
    for name in node.get("fits", []):
        if name in fits and not _fit_identified(fits[name]):
            out.append(f"{path}: the plan ({option}) reads {name}, which is not identified")
    if any("is not identified" in str(n) for n in node.get("notes", [])):
        out.append(f"{path}: the plan ({option}) notes that a law it reads is not identified")
    unevaluated = node.get("unevaluated")
    if not isinstance(unevaluated, dict):
        out.append(f"{path}: the plan ({option}) does not name the options it could not evaluate")
    else:
        if option in unevaluated:
            out.append(f"{path}: the plan's own option {option} is listed as not evaluated")
        out += [
            f"{path}: option {k} not evaluated, without a reason" for k, v in unevaluated.items() if not v
        ]
    return out


_SPLIT = re.compile(r"(train|validation|test)(/[\w.\-]+)?( \([^()]+\))?")


def split_name_ok(name: str) -> bool:
    """A split's name: train, validation or test, or <one of them>/<the part a method carved out>,
    optionally followed by a description in parentheses ("validation (not held-out)")."""
    return _SPLIT.fullmatch(name) is not None


def _split(node: dict, path: str) -> list[str]:
    name = node["split"]
    if not isinstance(name, str):  # e.g. a split *rule* ({heldout_fraction, ...}), not a split's name
        return []
    if not split_name_ok(name):
        return [
            f"{path}.split: {name!r} is not a split's name (train, validation, test, or "
            "<split>/<part> for a part of one)"
        ]
    if re.match(r"test\b", name):  # the test split, or a named part of it
        return []
    mislabelled = [k for k in node if k == "test" or k.startswith("test_")]
    return [f"{path}.{k}: named test in a result on the {name!r} split" for k in mislabelled]


# ----------------------------------------------------------------------------- rendered text

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_END = rf"(?:{_NUM}|unbounded|inf)"
_INLINE = re.compile(rf"(?<![\w.\-+])({_NUM})\s+\[({_END}),\s*({_END})\]", re.IGNORECASE)
_ESTIMATE_COLUMNS = ("estimate", "asymptote", "value", "times the base budget")


def _end(text: str) -> float | None:
    return None if text.lower() in ("unbounded", "inf") else float(text)


def check_text(text: str) -> list[str]:
    """Every "estimate [low, high]" in rendered text, and every markdown table row whose estimate
    column sits beside an interval column, with the estimate outside its interval."""
    out = []
    for line_no, line in enumerate(text.splitlines(), 1):
        for m in _INLINE.finditer(line):
            est, lo, hi = float(m.group(1)), _end(m.group(2)), _end(m.group(3))
            if _outside(est, lo, hi):
                out.append(f"line {line_no}: {m.group(0)!r}: the estimate lies outside its interval")
    return out + _tables(text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[str]:
    out, header = [], None
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip().startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        row = dict(zip(header, cells, strict=False))
        est_col = next((c for c in header if c in _ESTIMATE_COLUMNS), None)
        ci_col = next((c for c in header if "ci" in c.split() or c.endswith("% ci") or c == "ci"), None)
        if est_col is None or ci_col is None:
            continue
        est = re.fullmatch(_NUM, row.get(est_col, ""), re.IGNORECASE)
        ci = re.fullmatch(rf"\[({_END}),\s*({_END})\]", row.get(ci_col, ""), re.IGNORECASE)
        if est and ci and _outside(float(est.group(0)), _end(ci.group(1)), _end(ci.group(2))):
            out.append(
                f"line {line_no}: table row {row.get(header[0], '')!r}: {est_col} {est.group(0)} "
                f"lies outside its {ci_col} {ci.group(0)}"
            )
    return out


# ----------------------------------------------------------------------------- rendered reports


def check_report(markdown: str, files: Mapping[str, bytes | str] | None = None) -> list[str]:
    """A rendered report: its markdown, and each JSON file beside it (study.json: the fits, the plots'
    drawn values), each problem prefixed by where it is."""
    out = [f"report.md {p}" for p in check_text(markdown)]
    for name, data in sorted((files or {}).items()):
        if name.endswith(".json"):
            text = data.decode() if isinstance(data, bytes) else data
            out += [f"{name} {p}" for p in check(json.loads(text))]
        elif name.endswith(".md"):
            text = data.decode() if isinstance(data, bytes) else data
            out += [f"{name} {p}" for p in check_text(text)]
    return out


def check_report_dir(path: str | Path) -> list[str]:
    """check_report over a folder: report.md (if there) and every .md and .json file in it."""
    folder = Path(path)
    markdown = (folder / "report.md").read_text() if (folder / "report.md").exists() else ""
    files = {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.suffix in (".json", ".md") and p.name != "report.md"
    }
    return check_report(markdown, files)
