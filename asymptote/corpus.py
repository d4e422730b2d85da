"""Corpora on disk or S3: which files, in which format, read as batches of documents, split by document.

A source is a file, a folder or a glob (local or any fsspec URI) of one format: `.txt`, `.jsonl` or
`.json` (each optionally `.gz` or `.zst`), or `.parquet`. Records of jsonl/json/parquet and the files
of a folder of .txt are documents; one text file on its own is a single text. Documents go to the
train, validation or test split by a hash of their content, so the assignment needs no global pass,
is the same on every machine and in every format, and a duplicated document never straddles splits.
A single text is cut by position instead: [train | validation | test], nanoGPT's protocol when
test_fraction is 0. No Ray, no Prefect.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Iterator

import fsspec

BUILTIN_SOURCES = {"builtin:python-docs"}
FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".zst")
SPLITS = ("train", "val", "test")
BATCH_DOCS = 1024
BATCH_CHARS = 1 << 20  # a batch of documents is flushed at this many characters (memory bound)


@dataclass(frozen=True)
class CorpusFile:
    """One input file: its fsspec path (no protocol), format and compression."""

    path: str
    fmt: str
    compression: str | None = None


def file_format(path: str) -> tuple[str, str | None] | None:
    """(format, compression) from the file name, or None when it is not a corpus file."""
    name = path.lower()
    comp = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if comp:
        name = name[: -len(comp)]
    fmt = next((f for suffix, f in FORMATS.items() if name.endswith(suffix)), None)
    if fmt is None or (fmt == "parquet" and comp):
        return None
    return fmt, comp


def _python_docs() -> bytes:
    """The Python Language Reference topics shipped inside CPython (pydoc_data, PSF license)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")


def list_corpus(source: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, list]:
    """(filesystem, sorted CorpusFiles) of a file, folder or glob; one format, never empty."""
    if source.startswith("builtin:"):
        if source not in BUILTIN_SOURCES:
            raise ValueError(
                f"data.source={source!r}: unknown builtin; allowed: {', '.join(BUILTIN_SOURCES)}"
            )
        return fsspec.filesystem("memory"), [CorpusFile(source, "txt")]
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    if any(c in path for c in "*?["):
        paths = sorted(p for p in fs.glob(path) if fs.isfile(p))
    elif not fs.exists(path):
        raise FileNotFoundError(
            f"data.source={source!r} does not exist; give a file, a folder, a glob or a URI"
        )
    elif fs.isdir(path):
        paths = sorted(fs.find(path))
    else:  # one named file: its suffix decides, and an unknown suffix is read as text
        return fs, [CorpusFile(path, *(file_format(path) or ("txt", None)))]
    files = [CorpusFile(p, *f) for p in paths if (f := file_format(p))]
    if not files:
        allowed = ".txt, .jsonl, .json (each optionally .gz/.zst), .parquet"
        raise ValueError(f"data.source={source!r} holds no corpus files; allowed: {allowed}")
    fmts = sorted({"jsonl" if f.fmt == "json" else f.fmt for f in files})
    if len(fmts) > 1:
        raise ValueError(f"data.source={source!r} mixes formats {fmts}; give a folder or glob of one format")
    return fs, files


def is_single_text(files: list[CorpusFile]) -> bool:
    """One text file (or a builtin) is split by position; anything else by document."""
    return len(files) == 1 and files[0].fmt == "txt"


# ----------------------------------------------------------------------------- reading documents


def _open_text(fs, f: CorpusFile) -> io.TextIOBase:
    raw = fs.open(f.path, "rb")
    if f.compression == ".gz":
        raw = gzip.GzipFile(fileobj=raw)
    elif f.compression == ".zst":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    return io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8", newline="")


def read_text(fs, f: CorpusFile) -> str:
    """A whole text file (or builtin) as one string; refuses empty and binary files."""
    blob = _python_docs() if f.path.startswith("builtin:") else fs.cat_file(f.path)
    if f.compression == ".gz":
        blob = gzip.decompress(blob)
    elif f.compression == ".zst":
        import zstandard

        blob = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True).read()
    if not blob.strip():
        raise ValueError(f"{f.path} is empty")
    if b"\0" in blob[: 1 << 16]:
        raise ValueError(f"{f.path} looks binary (NUL bytes); give a text file")
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{f.path} is not UTF-8 text ({err}); is it a binary file?") from None


def _field(record, f: CorpusFile, where: str, text_field: str) -> str:
    if not isinstance(record, dict) or text_field not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{f.path}{where}: no field {text_field!r} (data.text_field); the record has {keys}")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"{f.path}{where}: field {text_field!r} is {type(text).__name__}, not text")
    return text


def _jsonl_records(fs, f: CorpusFile, text_field: str) -> Iterator[str]:
    with _open_text(fs, f) as lines:
        try:
            first = lines.read(1)
            if first == "[":  # a .json file holding one array of records
                records = json.loads(first + lines.read())
                yield from (_field(r, f, f"[{i}]", text_field) for i, r in enumerate(records))
                return
            for n, line in enumerate(_chain(first, lines), 1):
                if line.strip():
                    yield _field(_loads(line, f, n), f, f":{n}", text_field)
        except UnicodeDecodeError:
            raise ValueError(f"{f.path} is not UTF-8 text; is it a binary file?") from None


def _chain(first: str, lines) -> Iterator[str]:
    rest = lines.readline()
    yield first + rest
    yield from lines


def _loads(line: str, f: CorpusFile, n: int):
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{f.path}:{n} is not JSON ({err.msg}); is it a binary or a mixed file?") from None


def _parquet_records(fs, f: CorpusFile, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    with fs.open(f.path, "rb") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except Exception as err:
            raise ValueError(f"{f.path} is not a parquet file ({err})") from None
        if text_field not in pf.schema_arrow.names:
            raise ValueError(
                f"{f.path}: no column {text_field!r} (data.text_field); columns: {pf.schema_arrow.names}"
            )
        for batch in pf.iter_batches(batch_size=BATCH_DOCS, columns=[text_field]):
            yield from (t for t in batch.column(0).to_pylist() if t is not None)


def iter_documents(fs, f: CorpusFile, text_field: str = "text") -> Iterator[str]:
    """Every document of one file, streamed; a file without any is an error."""
    if f.fmt == "txt":
        docs: Iterator[str] = iter([read_text(fs, f)])
    elif f.fmt == "parquet":
        docs = _parquet_records(fs, f, text_field)
    else:
        docs = _jsonl_records(fs, f, text_field)
    empty = True
    for doc in docs:
        empty = False
        yield doc
    if empty:
        raise ValueError(f"{f.path} is empty: no documents")


def batches(docs: Iterator[str], max_chars: int = BATCH_CHARS) -> Iterator[list[str]]:
    """Group documents into batches bounded in count and in characters (what bounds memory)."""
    batch, chars = [], 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc)
        if len(batch) >= BATCH_DOCS or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


# ----------------------------------------------------------------------------- splits


def split_of(doc: str, val_fraction: float, test_fraction: float) -> int:
    """0 train, 1 validation, 2 test, from a hash of the document's text.

    Validation is the bottom val_fraction of the hash range and test the top test_fraction, so
    tuning val_fraction never moves a document into or out of the test split.
    """
    return split_of_bytes(doc.encode("utf-8", "surrogatepass"), val_fraction, test_fraction)


def split_of_bytes(blob: bytes, val_fraction: float, test_fraction: float) -> int:
    """`split_of` for a document already encoded as UTF-8."""
    u = int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") / 2.0**64
    if u < val_fraction:
        return 1
    return 2 if u >= 1.0 - test_fraction else 0


def utf8_cut(blob: bytes, i: int) -> int:
    """i moved back to the start of the UTF-8 character it falls in."""
    while 0 < i < len(blob) and (blob[i] & 0xC0) == 0x80:  # never cut inside a character
        i -= 1
    return i


def positional_split(text: str, val_fraction: float, test_fraction: float) -> list[str]:
    """[train, validation, test] of a single text: contiguous, in that order, cut by byte position."""
    blob = text.encode("utf-8")
    n = len(blob)
    a = utf8_cut(blob, int(n * (1 - val_fraction - test_fraction)))
    b = utf8_cut(blob, int(n * (1 - test_fraction)))
    return [blob[:a].decode(), blob[a:b].decode(), blob[b:].decode()]
