"""`asymptote`: the command line. Each command = a recipe + `--set` overrides -> a flow -> a summary.

Method commands are registered from COMMANDS (their flows live beside them); Ray starts only when a
flow needs it, so `asymptote --help` and config errors never start a cluster.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from asymptote.cli_options import JsonOpt, RecipeOpt, SetOpt, StoreOpt, recompute_opt

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
store_app = typer.Typer(no_args_is_help=True, help="Inspect and clean an artifact store.")
app.add_typer(store_app, name="store")
console = Console(stderr=True)


def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy machine is slow


def _config(cls, recipe: Optional[str], overrides: list[str], store: Optional[str]):
    from asymptote.config import ConfigError
    from asymptote.recipes import resolve

    if store:
        overrides = [*overrides, f"store.uri={store}"]
    try:
        return resolve(cls, recipe, overrides)
    except ConfigError as err:
        console.print(f"[red]{escape(str(err))}[/red]", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


def _finish(summary: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    for line in lines:
        console.print(line)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")


@app.command()
def run(
    recipe: str = typer.Argument("main", help="Recipe name or YAML path."),
    set_: list[str] = SetOpt,
    as_json: bool = JsonOpt,
    store: Optional[str] = StoreOpt,
) -> None:
    """The main job: every step of the recipe on one corpus, then one report."""
    _quiet_prefect()
    from asymptote.flows.main import MainConfig, main_job

    cfg = _config(MainConfig, recipe, set_, store)
    console.print(f"[bold]asymptote[/bold] main job: steps {', '.join(cfg.steps)}; store {cfg.store.uri}")
    res = main_job(cfg)
    _finish(
        res.model_dump(),
        as_json,
        [
            f"[green]done[/green]. Report: {res.report_uri}",
            f"Results, checkpoints and plots are under {res.store_uri} (runs/, reports/); list them with "
            f"`asymptote store ls --store {res.store_uri}`.",
        ],
    )


@app.command()
def pretrain(
    recipe: Optional[str] = RecipeOpt,
    set_: list[str] = SetOpt,
    as_json: bool = JsonOpt,
    store: Optional[str] = StoreOpt,
    recompute: list[str] = recompute_opt(("data", "train", "evaluate")),
) -> None:
    """Pre-train one model: prepare data, train on Ray, evaluate."""
    _quiet_prefect()
    from asymptote.config import PretrainConfig
    from asymptote.flows.pretrain import pretrain as pretrain_flow

    cfg = _config(PretrainConfig, recipe, set_, store)
    res = pretrain_flow(cfg, recompute=recompute)
    _finish(
        res.model_dump() | {"val_loss": res.metrics["val_loss"], "params": res.run.summary["params"]},
        as_json,
        [
            f"[green]done[/green]. val_loss {res.metrics['val_loss']:.4f}; run {res.run.uri}; report {res.report_uri}"
        ],
    )


@app.command()
def presets() -> None:
    """List model size presets with their parameter counts."""
    import torch

    from asymptote.config import ModelConfig
    from asymptote.model import Decoder, count_params
    from asymptote.presets import PRESETS

    for name in PRESETS:
        cfg = ModelConfig(preset=name)
        with torch.device("meta"):
            n = count_params(Decoder(cfg))
        typer.echo(
            f"{name:12s} {n / 1e6:9.3f}M  {cfg.n_layer}x{cfg.d_model} ffn {cfg.d_ff} heads {cfg.n_head}"
            f"/{cfg.n_kv_head} block {cfg.block_size}"
        )


@app.command()
def recipes() -> None:
    """List the bundled recipes."""
    from asymptote.recipes import recipe_names

    for name in recipe_names():
        typer.echo(name)


@store_app.command("ls")
def store_ls(store: Optional[str] = StoreOpt, as_json: bool = JsonOpt) -> None:
    """List committed artifacts: runs with their configs and metrics, data, reports, sizes."""
    from asymptote.infra.inventory import inventory

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
    from asymptote.infra.inventory import garbage_collect

    removed = garbage_collect(_store(store), dry_run=dry_run, min_age_hours=min_age_hours)
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        typer.echo(f"{verb} {path}")
    typer.echo(f"{verb} {len(removed)} files")


def _store(uri: Optional[str]):
    from asymptote.config import StoreConfig
    from asymptote.store import Store

    return Store(StoreConfig(uri=uri) if uri else StoreConfig())


# Method commands live beside their flows: name -> "module:function" (a typer-annotated function).
COMMANDS: dict[str, str] = {
    "scaling": "asymptote.flows.scaling:cli",
    "distill": "asymptote.flows.distill:cli",
    "soup": "asymptote.flows.soups:cli",
    "autolrs": "asymptote.flows.autolrs:cli",
    "serve": "asymptote.infra.deployments:cli",
}


def _register_commands() -> None:
    import importlib

    for name, target in COMMANDS.items():
        module, attr = target.split(":")
        app.command(name=name)(getattr(importlib.import_module(module), attr))


_register_commands()

if __name__ == "__main__":
    app()
