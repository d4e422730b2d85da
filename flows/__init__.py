"""Every asymptote flow, importable from one place: a typed config in, a typed result out.

    from asymptote.flows import pretrain, PretrainConfig
    result = pretrain(PretrainConfig(...))      # -> PretrainResult (URIs into the store, metrics, flow_run_id)

Each flow is a Prefect flow: called inside another flow it runs as a subflow, and every expensive
step inside it is cached in the artifact store, so calling it again with the same config reuses
what was made. Results are pydantic models: `result.model_dump()` is plain JSON. See docs/api.md.
"""

from __future__ import annotations

from importlib import import_module

# The public API, listed explicitly: flow -> (its module, its config class, its result class).
FLOWS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("pretrain", "PretrainConfig", "PretrainResult"),
    "main_job": ("main", "MainConfig", "MainResult"),
    "scaling_study": ("scaling", "ScalingStudyConfig", "ScalingStudyResult"),
    "distill": ("distill", "DistillConfig", "DistillResult"),
    "soup_study": ("soups", "SoupStudyConfig", "SoupStudyResult"),
    "autolrs": ("autolrs", "AutoLRSFlowConfig", "AutoLRSResult"),
    "autolrs_search": ("autolrs", "AutoLRSSearchConfig", "AutoLRSSearchResult"),
}

__all__: list[str] = []


def _export(flow: str, module: str, names: tuple[str, ...]) -> None:
    mod = import_module(f"{__name__}.{module}")
    # Binding the flow over the submodule attribute of the same name is deliberate: `from asymptote.flows
    # import distill` gives the flow; importlib.import_module("asymptote.flows.distill") gives the module.
    for name in (flow, *names):
        globals()[name] = getattr(mod, name)
        __all__.append(name)


for _flow, (_module, *_types) in FLOWS.items():
    _export(_flow, _module, tuple(_types))


def available_flows() -> dict[str, object]:
    """name -> flow object of every flow in FLOWS."""
    return {name: globals()[name] for name in FLOWS if name in globals()}
