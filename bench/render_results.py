"""The README's results table, rendered from the result files in bench/results/.

    python bench/render_results.py           # rewrite the table in README.md
    python bench/render_results.py --check   # exit 1 if README.md's table and the files disagree

One line per result file (`python bench/<bench>.py --data ... --save` writes it): the headline figure,
its interval, the corpus, the machine, the command (and protocol hash) that reproduces it, and a link
to the file. A figure without a file is not in the
table. Each bench names its headline below; a result file of a bench without one is an error, so a new
result cannot enter the README unread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _startup(r: dict) -> tuple[str, str]:
    figure = (
        f"`asymptote --help` {r['help_s']:.2f} s, a config error {r['config_error_s']:.2f} s, "
        f"a fully cached `pretrain` {r['cached_call_s']:.2f} s (`import torch` alone: {r['torch_import_s']:.2f} s)"
    )
    return figure, "best of 3 fresh processes; no interval"


def _distill(r: dict) -> tuple[str, str]:
    paper, kept = r["paper_method"], r["retained"].get(r["paper_method"])
    extensions = [
        f"{m} keeps {r['retained'][m]['estimate']:.0%}" for m in r["extensions"] if r["retained"].get(m)
    ]
    losses = (
        f"test loss {r['students'][paper]['estimate']:.4f}; single {r['single']['estimate']:.4f}, "
        f"ensemble {r['ensemble']['estimate']:.4f}"
        + (f", no-teacher control {r['control']['estimate']:.4f}" if r.get("control") else "")
        + (f"; extensions: {', '.join(extensions)}" if extensions else "")
    )
    if kept is None:  # the ensemble's gain is not resolved: nothing to retain
        lo, hi = r["ensemble_gain_ci"]
        figure = (
            f"the paper's ({paper}-level) student: {losses}; the ensemble's gain over the single model, "
            f"{r['ensemble_gain']:.3f} nats/token, is not resolved, so no share is reported"
        )
        return figure, f"gain {lo:.3f} to {hi:.3f} (bootstrap of {r['resampled']})"
    figure = (
        f"the paper's ({paper}-level) student keeps {kept['estimate']:.0%} of the "
        f"{r['members']}-member ensemble's gain ({losses})"
    )
    return figure, f"{kept['ci'][0]:.0%} to {kept['ci'][1]:.0%} (bootstrap of {r['resampled']})"


def _soups(r: dict) -> tuple[str, str]:
    g = r["greedy_gain"]
    figure = (
        f"greedy soup's gain over the best single fine-tune, pooled over {r['bases']} bases: "
        f"{g['estimate']:+.4f} nats/token on the {r['split']} split (p_direction {g['p_direction']:.3f})"
        + "".join(
            f"; {m} {v['estimate']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]"
            for m, v in r.get("gain_over_best", {}).items()
            if m in ("uniform", "learned")  # the other soups; merges are in the JSON
        )
    )
    return figure, f"{g['ci'][0]:+.4f} to {g['ci'][1]:+.4f} (bootstrap of {g['resampled']})"


def _autolrs(r: dict) -> tuple[str, str]:
    g, runs = r["grid"], r["autolrs_from_misset"]
    starts = "; ".join(
        f"from a {name} guess {a['estimate']:.3f} in {a['total_steps']:,.0f} steps (cosine at that guess "
        f"{r['misset'][name]['estimate']:.3f})"
        for name, a in runs.items()
    )
    figure = (
        f"AutoLRS test loss {starts}; the 5-point grid's cosine {g['estimate']:.3f} "
        f"in {r['grid_total_steps']:,} steps; {r['seeds']} seeds each"
    )
    cis = ", ".join(f"{name} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]" for name, a in runs.items())
    return figure, f"{cis}; grid [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}] (bootstrap of {g['resampled']})"


def _multiplier(m: dict) -> tuple[str, str]:
    """A data multiplier and its interval as text, or why there is none."""
    if m.get("estimate") is not None:
        lo, hi = (f"{v:.2f}" if v is not None else "unbounded" for v in m["ci"])
        return f"{m['estimate']:.2f}x", f"[{lo}, {hi}]"
    why = "beyond the standard recipe's reach" if m.get("reachable") is False else "none"
    return why, f"({m.get('reason') or why})"


def _reference(r: dict) -> str:
    """What the student is compared with: nanoGPT's script's figure, or the reference this run measured."""
    ref = r.get("reference") or {}
    if "ci" in ref:  # measured in the run: the standard arm on all of the training text
        return f"nanoGPT's recipe on all of it, measured: {ref['loss']:.3f}"
    return f"nanoGPT's script on all of it: {r['nanogpt_loss']}"


def _data_efficiency(r: dict) -> tuple[str, str]:
    s, (mult, mult_ci) = r["student"], _multiplier(r["data_multiplier"]["student"])
    figure = (
        f"from {r['fraction'] * 100:g}% of the training text ({r['unique_train_tokens']:,} tokens), the paper's "
        f"student {s['estimate']:.3f} on {r['split']} ({_reference(r)}); "
        f"standard {r['standard']['estimate']:.3f}, single {r['single']['estimate']:.3f}, ensemble "
        f"{r['ensemble']['estimate']:.3f}; the student's data multiplier {mult}"
    )
    return (
        figure,
        f"student [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}], multiplier {mult_ci} (bootstrap of {r['resampled']})",
    )


HEADLINES: dict[str, Callable[[dict], tuple[str, str]]] = {
    "startup": _startup,
    "autolrs": _autolrs,
    "distill": _distill,
    "soups": _soups,
    "data_efficiency": _data_efficiency,
}
"""Bench name -> (headline figure, its interval) from the bench's JSON line."""


def _machine(m: dict) -> str:
    """The GPU, else the cores; with the load average when the run shared the machine (a timing's
    context: other work slows it)."""
    where = m["gpu"] or f"{m['cores']} CPU cores"
    load = m.get("load_1min")
    return where + (f", load {load:.1f}" if load is not None and load >= 1 else "")


def rows(results: Path = RESULTS) -> list[str]:
    """One markdown row per result file, in file-name order."""
    out = []
    for path in sorted(results.glob("*.json")):
        record = json.loads(path.read_text())
        headline = HEADLINES.get(record["bench"])
        if headline is None:
            raise SystemExit(
                f"{path.name}: bench {record['bench']!r} has no headline in {Path(__file__).name}"
            )
        figure, interval = headline(record["result"])
        link = f"[{path.name}](bench/results/{path.name})"
        command = f"`{reproduce(record['command'])}`" + (
            f" (protocol {record['protocol']})" if record["result"].get("protocol") else ""
        )
        cells = [
            record["bench"],
            figure,
            interval,
            record["corpus"],
            _machine(record["machine"]),
            command,
            link,
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def reproduce(command: str) -> str:
    """The recorded command without where its run kept its store or whether it saved (neither changes a
    figure): what a reader types to reproduce the row."""
    words, out = command.split(), []
    for i, word in enumerate(words):
        if word == "--save" or word.startswith("--store=") or word == "--store":
            continue
        if i and words[i - 1] == "--store":
            continue
        out.append(word)
    return " ".join(out)


def table(results: Path = RESULTS) -> str:
    body = rows(results)
    if not body:
        return "No result files yet: a bench run with `--save` adds its line."
    head = [
        "| Benchmark | Figure | Interval | Corpus | Machine | Command | Result |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + body)


def render(readme: str, results: Path = RESULTS) -> str:
    """The README text with the table between the two markers replaced by the one the files give."""
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{table(results)}\n{END}{after}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md's table is not the rendered one")
    args = p.parse_args()
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.exit(
                "README.md's results table disagrees with bench/results/: run python bench/render_results.py"
            )
        return
    README.write_text(wanted)


if __name__ == "__main__":
    main()
