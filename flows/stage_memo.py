"""A whole stage's result, reused when nothing it depends on changed.

Every step inside a stage is a cached Prefect task, so a second call trains nothing; but it still
makes one task run per step (hundreds in the recipe), each a few API calls, which is most of a cached
call's time. The composite flows (the main job, the recipe) therefore keep each stage's result, and
the recipe its own, in the store under `stages/<method>/<key>`, keyed like a step: the stage's config
(volatile fields excluded), the content of its corpus and the code of the stage's flow module with
everything it imports. A later call with the same key returns that result without starting the stage,
after checking that every artifact the result names is still committed (a deleted run makes the stage
run again, and its cached steps rebuild only what is missing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from asymptote.config import DataConfig, key_dict, load
from asymptote.flows.registry import METHODS
from asymptote.shards import corpus_key
from asymptote.store import LAYOUT, Store, layout
from asymptote.versioning import step_key

log = logging.getLogger("asymptote")
R = TypeVar("R", bound=BaseModel)

RESULT = "result.json"

# The top folders of the store's artifacts: a result's string that starts with one names an artifact.
_TOP = {t.split("/")[0] for t in LAYOUT.values()}


def stage_key(method: str, config: BaseModel, store: Store) -> str:
    """What a stage's result depends on: its config, its corpus' content and its flow's code."""
    data = getattr(config, "data", None)
    corpus = None
    if isinstance(data, DataConfig):  # the same path with new content is a new corpus
        corpus = corpus_key(data, store.options)
    module = METHODS[method].flow.split(":")[0]
    return step_key(module, method=method, config=key_dict(config), corpus=corpus)


def named_paths(store: Store, value: Any) -> set[str]:
    """The store-relative paths that a result's strings name (as paths or URIs of this store)."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            rel = v
            if "://" in v or v.startswith("/"):
                try:
                    rel = store.relpath(v)
                except ValueError:  # outside this store (a user's corpus path)
                    return
            if rel.split("/")[0] in _TOP and "/" in rel:
                found.add(rel)

    walk(value)
    return found


def committed(store: Store, rel: str) -> bool:
    """Whether a path lies in a committed artifact: it, or a folder above it, has a manifest."""
    parts = rel.split("/")
    return any(store.has("/".join(parts[:n])) for n in range(len(parts), 1, -1))


def stored_result(method: str, config: BaseModel, store: Store) -> BaseModel | None:
    """The stage's stored result when its key is committed and every artifact it names still is."""
    rel = stage_rel(method, config, store)
    if not store.has(rel):
        return None
    result = load(METHODS[method].result).model_validate_json(store.read(rel, RESULT))
    missing = sorted(p for p in named_paths(store, result.model_dump(mode="json")) if not committed(store, p))
    if missing:
        log.info(
            "%s: %d artifacts of the stored result are gone (%s, ...); running it",
            method,
            len(missing),
            missing[0],
        )
        return None
    log.info("%s: unchanged since flow run %s; reusing its result (%s)", method, result.flow_run_id, rel)
    return result


def keep_result(method: str, config: BaseModel, store: Store, result: BaseModel) -> None:
    """Store a stage's result under its key (once: a flow that keeps its own result already did)."""
    rel = stage_rel(method, config, store)
    if not store.has(rel):
        with store.writer(rel, kind="stage", meta={"flow": method}) as folder:
            (folder / RESULT).write_text(result.model_dump_json())


def stage_rel(method: str, config: BaseModel, store: Store) -> str:
    return layout("stage", flow=method, key=stage_key(method, config, store))


def reuse_or_run(method: str, config: BaseModel, store: Store, run: Callable[[], R]) -> R:
    """`run()` (the stage's flow on `config`), unless the stage's stored result still holds; the result
    is stored for next time."""
    result = stored_result(method, config, store)
    if result is None:
        result = run()
        keep_result(method, config, store, result)
    return result
