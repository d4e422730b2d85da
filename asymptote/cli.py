"""`asymptote`: the command line. Each command = a recipe + `--set` overrides -> a flow -> a summary.

The method commands are generated from the method registry (asymptote.flows.registry). Nothing heavy is
imported until a command runs: `asymptote --help` reads the registry's strings only, and Ray starts
only when a flow needs it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from asymptote.cli_config import DEFAULTS, default_help, explain, sections
from asymptote.cli_options import JsonOpt, RecipeOpt, SetOpt, StoreOpt, VerboseOpt, recompute_opt
from asymptote.cli_ui import ui
from asymptote.config import ConfigError, ModelConfig, StoreConfig, load
from asymptote.flops import param_count
from asymptote.flows.registry import MAIN, METHODS, Method
from asymptote.infra import cluster, quiet, settings
from asymptote.infra import supervise as supervision
from asymptote.infra.deployments import cli as serve_cli
from asymptote.infra.inventory import garbage_collect, inventory
from asymptote.infra.supervise import supervise
from asymptote.preflight import check, check_recompute, one_check_per_call, user_error
from asymptote.presets import PRESETS, preset_note
from asymptote.recipes import recipe_description, recipe_names, resolve
from asymptote.report_check import check as inconsistencies
from asymptote.store import Store

# Piped (a log file, CI): plain tracebacks, which never wrap at 80 columns as rich's panels do.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=__doc__.splitlines()[0],
    pretty_exceptions_enable=sys.stderr.isatty(),
)
store_app = typer.Typer(no_args_is_help=True, help="Inspect and clean an artifact store.")
app.add_typer(store_app, name="store")
config_app = typer.Typer(no_args_is_help=True, help="Describe the config sections a recipe sets.")
app.add_typer(config_app, name="config")
console = Console(stderr=True, soft_wrap=True)


def _config(
    target: str, recipe: Optional[str], overrides: list[str], store: Optional[str], recompute=(), steps=()
):

    if store:
        overrides = [*overrides, f"store.uri={store}"]
    try:
        check_recompute(list(recompute), steps)
        cfg = resolve(load(target), recipe, overrides)
        check(cfg)  # data, store and model references, before Prefect or Ray starts
        return cfg
    except ConfigError as err:
        console.print(f"[red]{escape(str(err))}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _guarded(call: Callable[[], Any]) -> Any:
    """Run a flow; an error the user can act on (bad input, a corrupt artifact, a full disk, Ctrl-C)
    prints as one line naming what to fix, without a traceback."""

    quiet.install()
    try:
        return call()
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/yellow]: committed steps and checkpoints are kept; "
            "run the same command again to resume",
            highlight=False,
        )
        raise typer.Exit(130) from None
    except Exception as err:
        message = user_error(err)
        if message is None:
            raise
        console.print(f"[red]error[/red]: {escape(message)}", highlight=False)
        raise typer.Exit(1) from None


def _finish(summary: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    for line in lines:
        console.print(line, highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")


@app.command(
    help="The main job: every step of the recipe on one corpus, then one report.\n\n"
    f"Default recipe `{MAIN['recipe']}`: {DEFAULTS['run'].scale}."
)
def run(
    positional: Optional[str] = typer.Argument(None, metavar="RECIPE", help="The same as -r."),
    recipe: Optional[str] = RecipeOpt,
    set_: list[str] = SetOpt,
    as_json: bool = JsonOpt,
    store: Optional[str] = StoreOpt,
    verbose: bool = VerboseOpt,
) -> None:
    if positional and recipe and positional != recipe:
        console.print(f"[red]two recipes given: {escape(positional)} and -r {escape(recipe)}[/red]")
        raise typer.Exit(2)
    cluster.VERBOSE = verbose
    with one_check_per_call():  # the flow and its subflows reuse the check made here
        cfg = _config(MAIN["config"], recipe or positional or MAIN["recipe"], set_, store)
        supervise()  # the run goes on in a child process group, so that Ctrl-C stops it cleanly
        console.print(f"[bold]asymptote[/bold] main job: steps {', '.join(cfg.steps)}; store {cfg.store.uri}")
        res = _guarded(lambda: load(MAIN["flow"])(cfg))
    report_dir = res.report_uri.rsplit("/", 1)[0]
    _finish(
        res.model_dump(),
        as_json,
        [
            "[green]done[/green]. What it found (on the test split; val_ figures are validation):",
            *[escape(f"{name}: {line}") for name, line in res.summaries.items()],
            f"Report: {res.report_uri}",
            f"Plots: the PNG files beside it in {report_dir} (open report.md in any Markdown viewer).",
            f"Results, checkpoints and runs: {res.store_uri} (`asymptote store ls --store {res.store_uri}`).",
        ],
    )


def _run_method(method: Method, recipe, overrides, store, as_json, recompute) -> None:
    with one_check_per_call():  # the flow and its subflows reuse the check made here
        cfg = _config(method.config, recipe, overrides, store, recompute, method.steps)
        supervise()
        flow = load(method.flow)
        res = _guarded(lambda: flow(cfg, recompute=recompute) if method.steps else flow(cfg))
    figures, line = load(method.summary)(res)
    report = getattr(res, "report_uri", None)
    lines = [f"[green]done[/green]. {line}", *([f"report {report}"] if report else [])]
    _finish(res.model_dump() | figures, as_json, lines)


def _method_command(method: Method) -> Callable[..., None]:
    """A typer command for the method: recipe, --set, --json, --store, and --recompute where it has steps."""
    recompute_default = recompute_opt(method.steps)
    if method.steps:

        def command(
            recipe: Optional[str] = RecipeOpt,
            set_: list[str] = SetOpt,
            as_json: bool = JsonOpt,
            store: Optional[str] = StoreOpt,
            recompute: list[str] = recompute_default,
            verbose: bool = VerboseOpt,
        ) -> None:
            cluster.VERBOSE = verbose
            _run_method(method, recipe, set_, store, as_json, recompute)

    else:

        def command(
            recipe: Optional[str] = RecipeOpt,
            set_: list[str] = SetOpt,
            as_json: bool = JsonOpt,
            store: Optional[str] = StoreOpt,
            verbose: bool = VerboseOpt,
        ) -> None:
            cluster.VERBOSE = verbose
            _run_method(method, recipe, set_, store, as_json, [])

    command.__doc__ = f"{method.help}\n\n{default_help(method.name, method.recipe)}"
    return command


for _method in METHODS.values():
    app.command(name=_method.name)(_method_command(_method))


@app.command()
def presets() -> None:
    """List model size presets with their parameter counts (with the byte vocabulary)."""

    for name in PRESETS:
        cfg = ModelConfig(preset=name)
        n = param_count(cfg)
        typer.echo(
            f"{name:12s} {n / 1e6:9.3f}M  {cfg.n_layer}x{cfg.d_model} ffn {cfg.d_ff} heads {cfg.n_head}"
            f"/{cfg.n_kv_head} block {cfg.block_size}"
        )
    typer.echo(preset_note())


@app.command()
def recipes() -> None:
    """List the bundled recipes, each with its one-line description."""

    names = recipe_names()
    width = max(map(len, names))
    for name in names:
        typer.echo(f"{name:{width}s}  {recipe_description(name)}")


@config_app.command("explain")
def config_explain(
    section: str = typer.Argument(
        ..., help="A section (train, model, data, ...) or a command (scaling, run)."
    ),
) -> None:
    """Print each field of a config section: its type, default and docstring."""

    found = sections({"run": load(MAIN["config"])} | {name: load(m.config) for name, m in METHODS.items()})
    if section not in found:
        shown = sorted(n for n in found if "." not in n)
        console.print(f"[red]no config section {escape(section)!r}; known: {', '.join(shown)}[/red]")
        raise typer.Exit(2)
    for line in explain(found[section]):
        typer.echo(line)


@app.command()
def export(
    ref: str = typer.Argument(..., help="A committed model: runs/<key>, soups/<key>/<name>, or its URI."),
    out_dir: str = typer.Argument(..., help="Folder to write the Hugging Face Llama directory into."),
    store: Optional[str] = StoreOpt,
    dtype: str = typer.Option("float32", help="Weights' dtype: float32, bfloat16 or float16."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Test loss for the model card."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT_DIR."),
    as_json: bool = JsonOpt,
) -> None:
    """Export a run, soup or student as a transformers Llama (config, safetensors, tokenizer, card)."""
    from asymptote.export_hf import export_model  # torch: loaded by this command only

    res = _guarded(lambda: export_model(_store(store), ref, out_dir, dtype, evaluate, overwrite=overwrite))
    test = res.metrics.get("test_loss")
    line = f"[green]exported[/green] {res.ref} ({res.params:,} params) to {res.out_dir}"
    _finish(res.model_dump(), as_json, [line + (f"; test loss {test:.4f}" if test is not None else "")])


@app.command()
def plan(
    store: Optional[str] = StoreOpt,
    study: Optional[str] = typer.Option(
        None, help="Scaling study key (reports/scaling/KEY); default: newest."
    ),
    tokens: Optional[int] = typer.Option(None, help="Training tokens (default: the study's budget D)."),
    flops: Optional[float] = typer.Option(None, help="Compute budget in FLOPs: what loss does it buy?"),
    gpu_hours: Optional[float] = typer.Option(None, help="Compute budget in GPU-hours (needs --throughput)."),
    throughput: Optional[float] = typer.Option(None, help="Sustained FLOP/s per GPU for --gpu-hours."),
    loss: Optional[float] = typer.Option(None, help="Target test loss: what budget does it need?"),
    params: Optional[float] = typer.Option(None, help="A model size: what test loss does it reach?"),
    option: Optional[str] = typer.Option(
        None, help="With --params: standard, regularized or ensemble-K (default: the lowest loss)."
    ),
    seeds: int = typer.Option(1, min=1, help="The interval covers the mean test loss of this many runs."),
    extrapolate: bool = typer.Option(False, help="Plan beyond the sizes, K and tokens the fits cover."),
    as_json: bool = JsonOpt,
) -> None:
    """Plan a run from a scaling study's fits: model size, K, epochs, weight decay, lr, predicted loss."""
    # scipy's fits: loaded by this command only, so that --help and the other commands skip them
    from asymptote.planner import FitError, OutOfRange, Planner, gpu_hours_to_flops, load_inputs

    asked = [v is not None for v in (flops if gpu_hours is None else gpu_hours, loss, params)]
    if sum(asked) != 1 or (gpu_hours is not None and flops is not None):
        console.print("[red]give exactly one of --flops / --gpu-hours, --loss, --params[/red]")
        raise typer.Exit(2)
    try:
        planner = Planner(load_inputs(_store(store), study))
        t = tokens or planner.design.tokens
        if gpu_hours is not None:
            if throughput is None:
                raise OutOfRange("--gpu-hours needs --throughput (sustained FLOP/s per GPU)")
            flops = gpu_hours_to_flops(gpu_hours, throughput)
        if loss is not None:
            answer = planner.budget_for(loss, t, extrapolate=extrapolate)
        elif params is not None:
            answer = planner.predict(params, t, option, seeds=seeds, extrapolate=extrapolate)
        else:
            answer = planner.recommend(flops, t, seeds=seeds, extrapolate=extrapolate)
    except (OutOfRange, FitError) as err:
        console.print(f"[red]{escape(str(err))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    # a plan that contradicted itself (an estimate outside its interval) would say so here
    warnings = [f"[yellow]inconsistent: {escape(p)}[/yellow]" for p in inconsistencies(answer)]
    _finish(answer.model_dump(), as_json, [escape(line) for line in answer.lines()] + warnings)


@store_app.command("ls")
def store_ls(store: Optional[str] = StoreOpt, as_json: bool = JsonOpt) -> None:
    """List committed artifacts: runs with their configs and metrics, data, reports, sizes."""

    rows = inventory(_store(store))
    for r in rows:
        typer.echo(
            f"{r['kind']:10s} {r['size'] / 1e6:9.2f} MB  {r['created']}  {r['path']}  {r.get('headline', '')}"
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")


@store_app.command("gc")
def store_gc(
    store: Optional[str] = StoreOpt,
    dry_run: bool = typer.Option(False, "--dry-run"),
    min_age_hours: float = typer.Option(
        1.0, help="Spare unreferenced files younger than this (they may belong to a run still writing)."
    ),
) -> None:
    """Delete files that no committed manifest references."""

    removed = garbage_collect(_store(store), dry_run=dry_run, min_age_hours=min_age_hours)
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        typer.echo(f"{verb} {path}")
    typer.echo(f"{verb} {len(removed)} files")


def _store(uri: Optional[str]):

    return Store(StoreConfig(uri=uri) if uri else StoreConfig())


app.command(name="serve")(serve_cli)
app.command(name="ui")(ui)


def main() -> None:
    """The `asymptote` console command: the app, each run supervised so that Ctrl-C stops it cleanly."""
    settings.apply()  # the CLI's session: Prefect and Ray settings before a command imports either
    supervision.enable()
    app()


if __name__ == "__main__":
    main()
