"""Every asymptote flow, importable from one place: a typed config in, a typed result out.

    from asymptote.flows import pretrain, PretrainConfig
    result = pretrain(PretrainConfig(...))      # -> PretrainResult (URIs into the store, metrics, flow_run_id)

Each flow is a Prefect flow: called inside another flow it runs as a subflow, and every expensive
step inside it is cached in the artifact store, so calling it again with the same config reuses
what was made. Results are pydantic models: `result.model_dump()` is plain JSON. See docs/api.md.
"""

from __future__ import annotations

from importlib import import_module

# The public API, listed explicitly: module -> the names it exports (flow, its config, its result).
EXPORTS: dict[str, tuple[str, ...]] = {
    "pretrain": ("pretrain", "PretrainResult"),
    "main": ("main_job", "MainConfig", "MainResult"),
}
# Flows whose modules are written by other parts of the project; a missing one is skipped until it lands.
FLOWS: dict[str, str] = {"pretrain": "pretrain", "main_job": "main"}

__all__: list[str] = ["PretrainConfig"]
from asymptote.config import PretrainConfig  # noqa: E402  (the pretrain flow's config lives with the spine)


def _export(module: str, names: tuple[str, ...]) -> None:
    qualified = f"{__name__}.{module}"
    try:
        mod = import_module(qualified)
    except ModuleNotFoundError as err:
        if err.name != qualified:  # a real import error inside the module must surface
            raise
        return
    # Binding the flow function over the submodule attribute of the same name is deliberate:
    # `from asymptote.flows import pretrain` gives the flow; `asymptote.flows.pretrain` the module via import.
    for name in names:
        globals()[name] = getattr(mod, name)
        __all__.append(name)


for _module, _names in EXPORTS.items():
    _export(_module, _names)


def available_flows() -> dict[str, object]:
    """name -> flow object for every flow whose module is present."""
    return {name: globals()[name] for name in FLOWS if name in globals()}
