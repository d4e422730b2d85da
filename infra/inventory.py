"""What is in a store (`asymptote store ls`) and what no manifest references (`asymptote store gc`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from asymptote.store import MANIFEST, Manifest, Store

KEEP_PREFIXES = ("prefect/",)  # Prefect's own results and cache keys: referenced by Prefect, not manifests


def _manifests(store: Store) -> dict[str, Manifest]:
    store.invalidate()
    found = store.fs.glob(store.path("**", MANIFEST))
    out = {}
    for path in found:
        rel = store.relpath(path).rsplit("/", 1)[0] if "/" in store.relpath(path) else ""
        out[rel] = Manifest.from_json(store.fs.cat_file(path))
    return out


def _headline(m: Manifest) -> str:
    s = m.meta.get("summary", {})
    if m.kind == "run" and s:
        return f"{s.get('name', '')} params={s.get('params')} val_loss={s.get('val_loss', float('nan')):.4f}"
    if m.kind == "data":
        return f"{m.meta.get('source')} train={m.meta.get('n_train')} val={m.meta.get('n_val')}"
    if m.kind == "checkpoint":
        return f"step {m.meta.get('step')}"
    return ""


def inventory(store: Store) -> list[dict[str, Any]]:
    rows = [
        {
            "path": rel,
            "kind": m.kind,
            "size": m.size,
            "created": m.created,
            "headline": _headline(m),
            "meta": m.meta,
        }
        for rel, m in _manifests(store).items()
    ]
    return sorted(rows, key=lambda r: (r["kind"], r["path"]))


def _age_hours(info: dict[str, Any]) -> float:
    modified = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(modified, (int, float)):
        modified = dt.datetime.fromtimestamp(modified, dt.timezone.utc)
    if modified is None:
        return float("inf")
    return (dt.datetime.now(dt.timezone.utc) - modified).total_seconds() / 3600


def garbage_collect(store: Store, dry_run: bool = False, min_age_hours: float = 1.0) -> list[str]:
    """Remove files that are neither a manifest nor listed in one (older than min_age_hours)."""
    referenced = set()
    for rel, m in _manifests(store).items():
        prefix = f"{rel}/" if rel else ""
        referenced.add(f"{prefix}{MANIFEST}")
        referenced.update(f"{prefix}{name}" for name in m.files)
    removed = []
    for path, info in store.fs.find(store.root, detail=True).items():
        rel = store.relpath(path)
        if rel in referenced or rel.startswith(KEEP_PREFIXES) or _age_hours(info) < min_age_hours:
            continue
        removed.append(rel)
        if not dry_run:
            store.fs.rm(path)
    return sorted(removed)
