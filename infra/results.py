"""Prefect result storage in the artifact store: a saved filesystem block for <store>/prefect/<what>."""

from __future__ import annotations

import hashlib

from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from asymptote.store import Store


def block_name(store: Store, what: str) -> str:
    """The block's name: one per store and purpose, so two stores never share a block."""
    return f"asymptote-{what}-{hashlib.sha256(store.uri().encode()).hexdigest()[:12]}"


def result_storage(store: Store, what: str = "results") -> WritableFileSystem:
    """A saved block for <store>/prefect/<what>; Prefect refers to result storage by block id."""
    if store.is_local:
        block = LocalFileSystem(basepath=store.path("prefect", what))
    else:  # settings carry endpoint/region/profile only; credentials stay with botocore
        block = RemoteFileSystem(basepath=store.uri("prefect", what), settings=dict(store.options))
    block.save(block_name(store, what), overwrite=True)
    return block
