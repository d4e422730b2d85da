"""The artifact store: one fsspec interface over a local folder or S3 (s3fs).

Layout under the root (documented in docs/store.md):
    data/<key>/        token shards + meta.json
    runs/<key>/        config.json, model.safetensors, metrics.jsonl, loss.png, checkpoints/step_N/
    evals/<key>/ ...   reports/<flow>/<key>/   and prefect/ (Prefect results and cache keys)

An artifact is a folder whose MANIFEST.json lists every file with its sha256 and size. Files go up
first and the manifest last, so a reader that finds a manifest finds every file complete; reads
verify checksums and refuse a file that does not match. No Prefect or Ray imports here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import fsspec

from asymptote.config import StoreConfig, default_cache

MANIFEST = "MANIFEST.json"

# Where each kind of artifact lives under the root: the one place store paths are spelled
# (docs/store.md lists the same folders; a test checks that they agree).
LAYOUT = {
    "data": "data/{key}",
    "tokenizer": "tokenizers/{key}",
    "run": "runs/{key}",
    "checkpoints": "runs/{key}/checkpoints",
    "report": "reports/{flow}/{key}",
    "section": "reports/{flow}/sections/{key}",
    "schedule": "schedules/{key}",
    "soup": "soups/{key}",
    "sweep": "sweeps/{key}",
    "search": "searches/{key}",
    "tune": "tune/{key}",
    "stage": "stages/{flow}/{key}",
}


def layout(kind: str, **parts: Any) -> str:
    """The store-relative path of an artifact of `kind` (a LAYOUT entry), e.g. layout("run", key=k)."""
    return LAYOUT[kind].format(**parts)


MULTIPART_CHUNK = 16 * 2**20  # s3fs uploads files over 2 chunks as multipart, in chunks of this size


class IntegrityError(Exception):
    """A stored file does not match the checksum its manifest recorded.

    Deliberately not an OSError: Ray retries a training task on OSError (a lost node, a flaky
    mount), and a corrupt artifact is as corrupt on the next try."""


class NotCommitted(FileNotFoundError):
    """No manifest: the artifact does not exist or is still being written."""


@dataclass
class Manifest:
    kind: str
    files: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    version: int = 1

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        return cls(**json.loads(text))

    @property
    def digest(self) -> str:
        """One hash for the whole artifact: what a cache key should depend on."""
        parts = sorted((k, v["sha256"]) for k, v in self.files.items())
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    @property
    def size(self) -> int:
        return sum(v["size"] for v in self.files.values())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def s3_retries() -> dict[str, Any]:
    """botocore's retry settings for the store: an S3 endpoint that is unreachable for a while (a
    restart, a network blip; connection errors and 5xx) is retried with backoff rather than failing the
    step. 20 attempts in botocore's standard mode back off for ~3 minutes in all (each wait a random
    fraction of 2^n s, at most 20 s). AWS_MAX_ATTEMPTS and AWS_RETRY_MODE, as botocore reads them, win."""
    return {
        "retries": {
            "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", 20)),
            "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
        },
        "connect_timeout": 10,
        "read_timeout": 60,
    }


def s3_options(cfg: StoreConfig) -> dict[str, Any]:
    """s3fs arguments. Credentials are never passed: botocore reads env, profile or instance role."""
    endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs = {k: v for k, v in {"endpoint_url": endpoint, "region_name": cfg.region}.items() if v}
    opts: dict[str, Any] = {"client_kwargs": client_kwargs} if client_kwargs else {}
    opts["config_kwargs"] = s3_retries()
    if cfg.profile:
        opts["profile"] = cfg.profile
    return opts


class Store:
    """Artifacts under one root URI. Picklable: Ray workers rebuild the filesystem from the config."""

    def __init__(self, cfg: StoreConfig | str | None = None):
        cfg = StoreConfig(uri=cfg) if isinstance(cfg, str) else (cfg or StoreConfig())
        uri = cfg.uri
        if "://" not in uri:
            uri = str(Path(uri).expanduser().resolve())
        self.cfg = cfg.model_copy(update={"uri": uri})
        self.protocol = fsspec.core.split_protocol(uri)[0] or "file"
        self.options = s3_options(cfg) if self.protocol in ("s3", "s3a") else {}
        self.fs, self.root = fsspec.core.url_to_fs(uri, **self.options)
        self.root = self.root.rstrip("/")

    def __getstate__(self):
        return {"cfg": self.cfg}

    def __setstate__(self, state):
        self.__init__(state["cfg"])

    def __repr__(self) -> str:
        return f"Store({self.uri()!r})"

    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    # ------------------------------------------------------------------ paths

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def uri(self, *parts: str) -> str:
        p = self.path(*parts)
        return p if self.is_local else f"{self.protocol}://{p}"

    def relpath(self, uri_or_path: str) -> str:
        """The store-relative path of a URI or path inside this store."""
        p = uri_or_path.split("://", 1)[-1]
        if not p.startswith(self.root):
            raise ValueError(f"{uri_or_path} is not inside the store at {self.uri()}")
        return p[len(self.root) :].strip("/")

    # ------------------------------------------------------------------ raw files

    def put_file(self, local: str | Path, rel: str) -> None:
        """Upload one file so that a reader sees either nothing or all of it."""
        dest = self.path(rel)
        if self.is_local:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = f"{dest}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                shutil.copyfile(local, tmp)
                os.replace(tmp, dest)  # atomic on POSIX
            except BaseException:  # a full disk, a kill: leave no partial file behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:  # an S3 object appears whole when its (multipart) upload completes
            self.fs.put_file(str(local), dest, chunksize=MULTIPART_CHUNK)

    def put_bytes(self, rel: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(data)
        try:
            self.put_file(f.name, rel)
        finally:
            os.unlink(f.name)

    def get_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def rm(self, rel: str) -> None:
        """Delete a folder, its manifest first: a reader never sees a manifest whose files are gone."""
        if self.exists(f"{rel}/{MANIFEST}"):
            self.fs.rm(self.path(rel, MANIFEST))
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def ls(self, rel: str = "") -> list[str]:
        try:
            return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.path(rel), detail=False))
        except FileNotFoundError:
            return []

    def invalidate(self) -> None:
        """Forget cached listings (s3fs caches them) so writes by other machines become visible."""
        self.fs.invalidate_cache()

    # ------------------------------------------------------------------ artifacts

    @contextmanager
    def writer(self, rel: str, kind: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield a local folder; on success upload its files and commit a manifest. On error, nothing commits."""
        with tempfile.TemporaryDirectory(prefix="asymptote-") as tmp:
            yield Path(tmp)
            self.commit_folder(Path(tmp), rel, kind, meta or {})

    def commit_folder(self, folder: Path, rel: str, kind: str, meta: dict[str, Any]) -> Manifest:
        files = {}
        if self.exists(f"{rel}/{MANIFEST}"):  # rewriting: uncommit first so no reader mixes versions
            self.fs.rm(self.path(rel, MANIFEST))
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f.relative_to(folder).as_posix()
            files[name] = {"sha256": sha256_file(f), "size": f.stat().st_size}
            self.put_file(f, f"{rel}/{name}")
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        manifest = Manifest(kind=kind, files=files, meta=meta, created=created)
        self.put_bytes(f"{rel}/{MANIFEST}", manifest.to_json().encode())
        return manifest

    def manifest(self, rel: str) -> Manifest:
        try:
            return Manifest.from_json(self.get_bytes(f"{rel}/{MANIFEST}"))
        except FileNotFoundError:
            raise NotCommitted(f"no committed artifact at {self.uri(rel)}") from None

    def has(self, rel: str) -> bool:
        return self.exists(f"{rel}/{MANIFEST}")

    def model_ref(self, ref: str, field: str) -> str:
        """A user's path or URI of a trained model (a run, a soup) -> its store-relative path, refusing
        anything that is not a committed artifact with a model; `field` names the config field."""
        rel = self.relpath(ref) if "://" in ref or ref.startswith("/") else ref.strip("/")
        if not self.has(rel) or "model" not in self.manifest(rel).meta:
            raise ValueError(
                f"{field}={ref!r}: no committed model at {self.uri(rel)}; give a runs/<key> "
                "(or soups/<key>/<name>) path of this store, or its URI"
            )
        return rel

    def read(self, rel: str, name: str) -> bytes:
        """One file of a committed artifact, verified against its manifest."""
        entry = self.manifest(rel).files.get(name)
        if entry is None:
            raise FileNotFoundError(f"{name} is not in the artifact {self.uri(rel)}")
        data = self.get_bytes(f"{rel}/{name}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise IntegrityError(f"{self.uri(rel, name)} does not match its manifest checksum; refusing it")
        return data

    def read_json(self, rel: str, name: str) -> Any:
        return json.loads(self.read(rel, name))

    def localize(self, rel: str) -> Path:
        """A local folder holding the verified files of an artifact (downloaded once per machine)."""
        manifest = self.manifest(rel)
        if self.is_local:
            folder = Path(self.path(rel))
            _verify_folder(folder, manifest, self.uri(rel))
            return folder
        folder = (
            cache_dir(self.cfg)
            / "artifacts"
            / hashlib.sha256(self.uri(rel).encode()).hexdigest()[:16]
            / manifest.digest
        )
        if not (folder / ".complete").exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
            for name in manifest.files:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(self.path(rel, name), str(tmp / name))
            _verify_folder(tmp, manifest, self.uri(rel))
            (tmp / ".complete").touch()
            try:
                os.replace(tmp, folder)  # another process may have won the race: theirs is as good
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def artifacts(self, prefix: str) -> list[str]:
        """Store-relative paths of every committed artifact under prefix (e.g. 'runs')."""
        pattern = self.path(prefix, "**", MANIFEST)
        found = self.fs.glob(pattern)
        return sorted(self.relpath(p).rsplit("/", 1)[0] for p in found)


def _verify_folder(folder: Path, manifest: Manifest, where: str) -> None:
    for name, entry in manifest.files.items():
        f = folder / name
        if not f.exists() or f.stat().st_size != entry["size"] or sha256_file(f) != entry["sha256"]:
            raise IntegrityError(f"{where}/{name} does not match its manifest checksum; refusing it")


def cache_dir(cfg: StoreConfig | None = None) -> Path:
    """Per-machine cache of downloaded artifacts: the store's `cache` field, else its default
    ($ASYMPTOTE_CACHE or ~/.cache/asymptote)."""
    d = Path(cfg.cache if cfg is not None else default_cache()).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d
