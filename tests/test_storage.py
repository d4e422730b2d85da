"""The artifact store: commit by manifest, verified reads, listing and garbage collection."""

from __future__ import annotations

import os

import pytest

from asymptote.infra.inventory import garbage_collect, inventory
from asymptote.store import IntegrityError, NotCommitted


def _write(store, rel="runs/abc", text="weights"):
    with store.writer(rel, kind="run", meta={"summary": {"name": "x", "params": 1, "val_loss": 1.5}}) as d:
        (d / "model.bin").write_text(text)
        (d / "sub").mkdir()
        (d / "sub" / "notes.txt").write_text("n")
    return rel


def test_commit_then_read_verified(store):
    rel = _write(store)
    assert store.has(rel)
    assert store.read(rel, "model.bin") == b"weights"
    assert set(store.manifest(rel).files) == {"model.bin", "sub/notes.txt"}


def test_failed_writer_commits_nothing(store):
    with pytest.raises(RuntimeError):
        with store.writer("runs/broken", kind="run") as d:
            (d / "model.bin").write_text("half")
            raise RuntimeError("crash mid-write")
    assert not store.has("runs/broken")
    with pytest.raises(NotCommitted):
        store.read("runs/broken", "model.bin")


def test_manifest_is_written_last(store, monkeypatch):
    """A reader polling during the upload never sees a manifest before every file is in place."""
    order = []
    real_put = store.put_file
    monkeypatch.setattr(store, "put_file", lambda local, rel: (order.append(rel), real_put(local, rel)))
    _write(store)
    assert order[-1].endswith("MANIFEST.json") and len(order) == 3


def test_corrupted_file_is_refused(store):
    rel = _write(store)
    with open(store.path(rel, "model.bin"), "w") as f:
        f.write("tampered")
    with pytest.raises(IntegrityError, match="checksum"):
        store.read(rel, "model.bin")
    with pytest.raises(IntegrityError):
        store.localize(rel)


def test_rewrite_uncommits_first(store):
    rel = _write(store, text="v1")
    _write(store, rel, text="v2")
    assert store.read(rel, "model.bin") == b"v2"


def test_inventory_and_gc(store):
    rel = _write(store)
    orphan = store.path("runs", "dead", "model.bin")
    os.makedirs(os.path.dirname(orphan))
    open(orphan, "w").write("orphan")
    rows = inventory(store)
    assert [r["path"] for r in rows] == [rel] and "val_loss=1.5000" in rows[0]["headline"]
    assert garbage_collect(store, min_age_hours=1.0) == []  # too young: might be a run still writing
    assert garbage_collect(store, dry_run=True, min_age_hours=0) == ["runs/dead/model.bin"]
    assert os.path.exists(orphan)
    assert garbage_collect(store, min_age_hours=0) == ["runs/dead/model.bin"]
    assert not os.path.exists(orphan) and store.read(rel, "model.bin") == b"weights"
