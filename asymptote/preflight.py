"""Pre-flight checks: what can be known to fail is refused before Prefect, Ray or any training starts.

A missing, empty, binary or too small corpus, a store that cannot be written, an S3 endpoint that
refuses connections or credentials it rejects, a run or soup URI that is not a committed model: each
would otherwise surface minutes later, deep in a Ray task, as a retried failure with a long traceback.
`check(config)` looks at the config's data sources, store and model references in a second or two
and raises one `PreflightError` whose message names the field, the file or URI and what is allowed.
The CLI calls it before it imports a flow, and every flow calls it on its first line (the Python API);
inside `one_check_per_call()` (the CLI's command, a composite flow's body) a store, corpus or model
already checked is not checked again, so one call checks each input once. Nothing here writes to the store. No Prefect
or Ray imports.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel

from asymptote.config import ConfigError, DataConfig, StoreConfig, stable_hash
from asymptote.corpus import list_corpus
from asymptote.store import IntegrityError, Store, s3_options

SNIFF_BYTES = 1 << 16  # how much of each corpus file is read to tell text from binary
SNIFF_FILES = 16  # at most this many files of a folder or glob are sniffed
S3_TIMEOUT_S = 3.0
# Fields (dotted paths in a config) that name a trained model of the store: a run, checkpoint or soup.
MODEL_REF_FIELDS = (
    "base.run",
    "ingredients",
    "teacher.members",
    "teacher.single",
    "independent.runs",
    "init_from",
)


class PreflightError(ConfigError):
    """Input that cannot work: the message names the field, the file or URI, and what is allowed."""


@dataclass(frozen=True)
class _Corpus:
    """A data source found in a config, with the context size the models trained on it need."""

    field: str
    data: DataConfig
    block_size: int


# What this call has checked and found fine (stores, corpora, model references); None outside
# `one_check_per_call`, where every check runs.
_CHECKED: ContextVar[set[str] | None] = ContextVar("asymptote_preflight_checked", default=None)


@contextmanager
def one_check_per_call() -> Iterator[None]:
    """Within the block, each store, corpus and model reference is checked once, whichever configs
    name it: the CLI, the flow it calls and that flow's subflows share the first check. A block inside
    another shares the outer one's."""
    if _CHECKED.get() is not None:
        yield
        return
    token = _CHECKED.set(set())
    try:
        yield
    finally:
        _CHECKED.reset(token)


def _once(what: Any, check_it: Callable[[], None]) -> None:
    """Run a check unless this call already passed the same one."""
    checked = _CHECKED.get()
    key = stable_hash(what)
    if checked is not None and key in checked:
        return
    check_it()
    if checked is not None:
        checked.add(key)


def check(config: BaseModel) -> None:
    """Refuse the config's inputs if they cannot work; return None when they look fine."""
    for sub in _sub_configs(config):  # the main job: every step's own validated config
        check(sub)
    store_cfg = getattr(config, "store", None)
    store_cfg = store_cfg if isinstance(store_cfg, StoreConfig) else None
    store = store_cfg.model_dump(mode="json") if store_cfg else None
    if store_cfg:
        _once(["store", store], lambda: check_store(store_cfg))
    for corpus in _corpora(config):
        what = ["corpus", corpus.data.model_dump(mode="json"), corpus.block_size, store]
        _once(what, lambda c=corpus: check_corpus(c, store_cfg))
    refs = list(_model_refs(config))
    if refs and store_cfg:
        _once(["models", sorted(set(r for _, r in refs)), store], lambda: check_model_refs(refs, store_cfg))


def check_recompute(recompute: list[str], steps) -> None:
    """`--recompute` names only steps the command has."""
    unknown = sorted(set(recompute) - set(steps))
    if unknown:
        raise PreflightError(f"--recompute {' '.join(unknown)}: unknown step; allowed: {', '.join(steps)}")


def _sub_configs(config: BaseModel) -> list[BaseModel]:
    steps, step_config = getattr(config, "steps", None), getattr(config, "step_config", None)
    if not (isinstance(steps, list) and callable(step_config)):
        return []
    return [step_config(name) for name in steps]


# ----------------------------------------------------------------------------- finding inputs


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, BaseModel | None]]:
    """(dotted path, value, parent model) of every field below node, depth first."""
    if not isinstance(node, BaseModel):
        return
    for name in type(node).model_fields:
        value = getattr(node, name)
        here = f"{path}.{name}" if path else name
        yield here, value, node
        if isinstance(value, BaseModel):
            yield from _walk(value, here)


def _block_size(parent: BaseModel | None, root: BaseModel) -> int:
    """The largest context length of the models that train on a corpus: its sibling `model`, the
    study's `sizes`, or the root's `model`."""
    sizes = []
    for owner in (parent, root):
        model = getattr(owner, "model", None)
        sizes += [model.block_size] if hasattr(model, "block_size") else []
        sizes += [m.block_size for m in getattr(owner, "sizes", None) or [] if hasattr(m, "block_size")]
    return max(sizes, default=2)


def _corpora(config: BaseModel) -> list[_Corpus]:
    return [
        _Corpus(f"{path}.source", value, _block_size(parent, config))
        for path, value, parent in _walk(config)
        if isinstance(value, DataConfig)
    ]


def _model_refs(config: BaseModel) -> Iterator[tuple[str, str]]:
    for path, value, _ in _walk(config):
        if path in MODEL_REF_FIELDS and isinstance(value, str) and value:
            yield path, value
        elif path in MODEL_REF_FIELDS and isinstance(value, list):
            yield from ((f"{path}[{i}]", v) for i, v in enumerate(value))


# ----------------------------------------------------------------------------- the store


def check_store(cfg: StoreConfig) -> None:
    """The store can be written (local) or reached with accepted credentials (S3), creating nothing."""
    uri = cfg.uri
    if uri.startswith(("s3://", "s3a://")):
        check_s3(uri, cfg, "store.uri")
    elif "://" in uri and not uri.startswith("file://"):
        raise PreflightError(f"store.uri={uri!r}: unsupported; allowed: a local folder or s3://bucket/prefix")
    else:
        _check_local_store(Path(uri.removeprefix("file://")).expanduser(), uri)


def _check_local_store(path: Path, uri: str) -> None:
    if path.exists() and not path.is_dir():
        raise PreflightError(f"store.uri={uri!r} is a file; give a folder (or s3://bucket/prefix)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PreflightError(f"store.uri={uri!r}: {existing} is a file, so the store folder cannot be made")
    try:  # a probe folder, removed at once: the only way to know (root ignores permission bits)
        os.rmdir(tempfile.mkdtemp(prefix=".asymptote-probe-", dir=existing))
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise PreflightError(
            f"store.uri={uri!r}: cannot write under {existing} ({reason}); give a writable folder "
            "or s3://bucket/prefix"
        ) from None


def check_s3(uri: str, cfg: StoreConfig, field: str) -> None:
    """The bucket answers, with credentials it accepts, within a few seconds (no long retries)."""
    import boto3
    import botocore.config
    import botocore.exceptions as bex

    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    session = boto3.Session(profile_name=cfg.profile) if cfg.profile else boto3.Session()
    if session.get_credentials() is None:
        raise PreflightError(
            f"{field}={uri!r}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "store.profile, or run where an instance role provides them"
        )
    endpoint = s3_options(cfg).get("client_kwargs", {}).get("endpoint_url")
    timeouts = botocore.config.Config(
        connect_timeout=S3_TIMEOUT_S, read_timeout=S3_TIMEOUT_S, retries={"total_max_attempts": 1}
    )
    client = session.client("s3", endpoint_url=endpoint, region_name=cfg.region, config=timeouts)
    where = endpoint or "AWS S3"
    try:
        client.head_bucket(Bucket=bucket)
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as err:
        raise PreflightError(
            f"{field}={uri!r}: cannot reach the S3 endpoint {where} ({type(err).__name__}); "
            "check store.endpoint_url / AWS_ENDPOINT_URL and the network"
        ) from None
    except bex.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "?")
        raise PreflightError(f"{field}={uri!r}: {_s3_reason(code, bucket, where)}") from None
    except bex.BotoCoreError as err:
        raise PreflightError(f"{field}={uri!r}: S3 at {where} failed: {err}") from None


def _s3_reason(code: str, bucket: str, where: str) -> str:
    if code in ("404", "NoSuchBucket"):
        return f"bucket {bucket!r} does not exist at {where}; create it or name another"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access to bucket {bucket!r} at {where} is denied ({code}); check the credentials and policy"
    return f"S3 at {where} refused bucket {bucket!r} ({code})"


# ----------------------------------------------------------------------------- corpora


def check_corpus(corpus: _Corpus, store_cfg: StoreConfig | None) -> None:
    """The source exists, holds text (not binary, not empty) and can fill the model's windows."""

    source, field = corpus.data.source, corpus.field
    if source.startswith(("s3://", "s3a://")):
        check_s3(source, store_cfg or StoreConfig(), field)
    options = _storage_options(source, store_cfg)
    try:
        fs, files = list_corpus(source, options)
    except (ValueError, FileNotFoundError) as err:
        raise PreflightError(_named(str(err), field, source)) from None
    except PermissionError:
        raise PreflightError(f"{field}={source!r} cannot be read (permission denied)") from None
    if source.startswith("builtin:"):
        return
    for f in files[:SNIFF_FILES]:
        _sniff(fs, f, field)
    _check_size(corpus, fs, files)


def _storage_options(source: str, store_cfg: StoreConfig | None) -> dict:

    return s3_options(store_cfg or StoreConfig()) if source.startswith(("s3://", "s3a://")) else {}


def _named(message: str, field: str, source: str) -> str:
    return message if message.startswith(field.rsplit(".", 1)[0]) else f"{field}={source!r}: {message}"


def _sniff(fs, f, field: str) -> None:
    """Refuse an empty or binary file from its first bytes (compressed files are decoded lazily later)."""
    try:
        size = fs.size(f.path)
        with fs.open(f.path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except PermissionError:
        raise PreflightError(f"{field}: {f.path} cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise PreflightError(f"{field}: {f.path} is a folder, not a corpus file") from None
    if not size or not head.strip():
        raise PreflightError(f"{field}: {f.path} is empty; give a file with text in it")
    if f.compression or f.fmt == "parquet":
        return
    if b"\0" in head or not _utf8(head, complete=len(head) == size):
        raise PreflightError(
            f"{field}: {f.path} is binary, not UTF-8 text; allowed: .txt, .jsonl, .json "
            "(optionally .gz/.zst) or .parquet"
        )


def _utf8(head: bytes, complete: bool) -> bool:
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as err:  # a cut at the sniff's end is fine; anything earlier is not
        return not complete and err.start >= len(head) - 3


def _check_size(corpus: _Corpus, fs, files) -> None:
    """Bytes bound tokens from above (every tokenizer emits at most one token per byte), so a corpus
    whose training or validation share has fewer bytes than its windows need can never train."""
    if any(f.compression for f in files):
        return
    data, block = corpus.data, corpus.block_size
    total = sum(fs.size(f.path) for f in files)
    train = int(total * (1 - data.val_fraction - data.test_fraction))
    val = int(total * data.val_fraction)
    need_train, need_val = 2 * block, block + 1
    if train < need_train or val < need_val:
        raise PreflightError(
            f"{corpus.field}={data.source!r}: the corpus is too small for model.block_size={block}: "
            f"{total} bytes give at most {train} training and {val} validation tokens; need at least "
            f"{need_train} and {need_val}: give more text or a smaller block_size"
        )
    if data.max_train_tokens is not None and data.max_train_tokens < need_train:
        raise PreflightError(
            f"data.max_train_tokens={data.max_train_tokens} cannot fill one window of "
            f"model.block_size={block}; allowed: at least {need_train} (or null for all)"
        )


# ----------------------------------------------------------------------------- model references


def check_model_refs(refs: list[tuple[str, str]], store_cfg: StoreConfig) -> None:
    """Every run, checkpoint or soup a config names is a committed model of its store."""

    store = Store(store_cfg)
    for field, ref in refs:
        try:
            store.model_ref(ref, field)
        except ValueError as err:
            raise PreflightError(str(err)) from None
        except OSError as err:
            reason = os.strerror(err.errno or errno.EIO)
            raise PreflightError(f"{field}={ref!r}: cannot be read ({reason})") from None


# ----------------------------------------------------------------------------- errors met while running


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def user_error(exc: BaseException) -> str | None:
    """One line for an error the user can act on (found anywhere in its chain of causes), else None:
    bad input, a stored file that fails its checksum, a full disk."""

    seen = exc
    while seen is not None:
        inner = _unwrapped(seen)
        if isinstance(inner, (ConfigError, IntegrityError)):
            return str(inner).strip().splitlines()[-1] if isinstance(inner, IntegrityError) else str(inner)
        text = str(seen)  # Ray flattens a remote error's causes into its text
        if getattr(seen, "errno", None) in FULL_DISK or "[Errno 28]" in text:
            # a copy that fills the disk names its source, then (-> ) the file it was writing
            named = re.search(r"\[Errno 28\][^'\n]*'([^'\n]+)'(?: -> '([^'\n]+)')?", text)
            written = getattr(seen, "filename2", None) or getattr(seen, "filename", None)
            where = written or (named.group(2) or named.group(1) if named else "the store")
            where = re.sub(r"\.tmp-[0-9a-f]{8}$", "", str(where))  # Store.put_file's temporary name
            return f"no space left on the disk of {where}; free space or point --store elsewhere, then rerun"
        named = re.search(r"IntegrityError: (.+)", text)
        if named:
            return named.group(1).strip()
        seen = seen.__cause__ or seen.__context__
    return None


def _unwrapped(exc: BaseException) -> BaseException:
    """The error a remote task raised: Ray re-raises it wrapped (a subclass of its type whose text is
    the whole remote traceback) and keeps the original as `.cause`."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) and isinstance(exc, type(cause)) else exc
