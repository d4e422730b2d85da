"""Options every `asymptote` command shares, defined once so their flags and help read the same."""

from __future__ import annotations

import typer

RecipeOpt = typer.Option(
    None, "--recipe", "-r", help="Recipe name (see `asymptote recipes`) or YAML path; default: below."
)
SetOpt = typer.Option([], "--set", "-s", help="Override a field: section.field=value (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON summary line last (on stdout).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Show Ray's own start-up and info log lines.")
StoreOpt = typer.Option(
    None, "--store", help="Artifact store root (folder or s3://...); overrides the recipe."
)


def recompute_opt(steps) -> typer.models.OptionInfo:
    """`--recompute STEP` (repeatable): force one of the flow's cached steps to run again."""
    return typer.Option(
        [], "--recompute", help=f"Force a step to recompute instead of using its cache: {', '.join(steps)}."
    )
