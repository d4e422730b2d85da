"""Every asymptote flow, importable from one place: a typed config in, a typed result out.

    from asymptote.flows import pretrain, PretrainConfig
    result = pretrain(PretrainConfig(...))      # -> PretrainResult (URIs into the store, metrics, flow_run_id)

Each flow is a Prefect flow: called inside another flow it runs as a subflow, and every expensive
step inside it is cached in the artifact store, so calling it again with the same config reuses
what was made. Results are pydantic models: `result.model_dump()` is plain JSON. See docs/api.md.

The names come from the method registry (asymptote.flows.registry) and load on first use, so importing one
flow does not import every method's dependencies. Flow modules are named apart from their flows
(`pretraining` holds `pretrain`), so a name here is never shadowed by a submodule.
"""

from __future__ import annotations

from typing import Any

from asymptote.config import load
from asymptote.flows.registry import exports
from asymptote.infra import settings

# The Python API's session entry: Prefect reads its settings when first imported, and every flow
# module imports it, so they are applied here, explicitly, before any flow module loads.
settings.apply()

EXPORTS = exports()
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = load(EXPORTS[name])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
