"""Tokenising a 1 GB corpus: the project's Ray Data job vs a bare `encode_batch` loop, side by side.

Builds (in a temporary folder outside the repo) zstd-compressed jsonl shards of at least --gb GB of
text from what is at hand (--data, e.g. tinyshakespeare, and the builtin python-docs text, records of
randomly drawn paragraphs with a per-record id), lets the project train a byte-level BPE of --vocab
tokens on a sample of the training split, then tokenises the corpus through the project
(tasks.tokenize on a local Ray, in a child process whose whole process tree is sampled for RSS) and
with a bare single-process loop (zstd stream -> json -> tokenizers' encode_batch, Rust threads on)
over the same files and the same tokenizer.

    nice -n 10 python bench/tokenization.py --data ../shared/data/tinyshakespeare.txt --gb 1
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import emit, parser

from asymptote.config import DataConfig


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the corpus


def paragraphs(data: str) -> list[str]:
    from asymptote.data import read_source

    texts = [Path(data).read_text(), read_source("builtin:python-docs").decode()]
    return [p.strip() for t in texts for p in t.split("\n\n") if p.strip()]


def build_corpus(data: str, folder: Path, gb: float, n_files: int) -> int:
    """jsonl.zst shards of records of 1-12 random paragraphs; returns the text bytes written."""
    import numpy as np
    import zstandard

    paras, rng = paragraphs(data), np.random.default_rng(0)
    per_file, total, record = int(gb * 1e9 / n_files) + 1, 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        written = 0
        with open(folder / f"part-{i:04d}.jsonl.zst", "wb") as fh:
            with zstandard.ZstdCompressor(level=3).stream_writer(fh) as z:
                out = io.TextIOWrapper(z, encoding="utf-8")
                while written < per_file:
                    picks = rng.integers(0, len(paras), int(rng.integers(1, 13)))
                    text = f"Record {record}.\n\n" + "\n\n".join(paras[j] for j in picks)
                    out.write(json.dumps({"id": record, "text": text}) + "\n")
                    written += len(text.encode())
                    record += 1
                out.flush()
        total += written
    (folder / "SIZE").write_text(str(total))  # no corpus suffix: the readers skip it
    return total


# ----------------------------------------------------------------------------- the project's job


# Run as `python -c` in a temporary folder, so the job's process tree is the child's alone.
CHILD = """
import json, os, sys, time
from asymptote.config import DataConfig
from asymptote.infra.cluster import ray_session
from asymptote.store import Store
from asymptote.tasks.tokenize import ensure_tokenizer, tokenize_corpus

corpus, store, vocab, sample = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
extra = json.loads(sys.argv[5])
cfg = DataConfig(source=corpus, tokenizer="bpe", vocab_size=vocab, tokenizer_sample_bytes=sample, **extra)
st = Store(store)
t0 = time.perf_counter()
with ray_session(num_cpus=os.cpu_count()):
    t1 = time.perf_counter()
    ensure_tokenizer(cfg, st, st.options)
    t2 = time.perf_counter()
    rel, stats = tokenize_corpus(cfg, st)
    t3 = time.perf_counter()
out = {"rel": rel, "stats": stats, "ray_start_s": t1 - t0, "bpe_train_s": t2 - t1, "tokenize_s": t3 - t2}
print(json.dumps(out), flush=True)
"""


def label(p) -> str:
    """A readable name for one process of the job: Ray's process title (ray::IDLE, ray::_StatsActor,
    ray::Map(...)), a helper script's file name (monitor.py, log_monitor.py), or the binary's name."""
    cmd = p.cmdline() or [p.name()]
    if cmd[0].startswith("ray::"):
        return cmd[0].split()[0]
    script = next((Path(c).name for c in cmd[1:] if c.endswith(".py")), None)
    return script or ("driver" if cmd[0].endswith(("python", "python3")) else Path(cmd[0]).name)


def tree_memory(pid: int) -> tuple[dict[str, int], int]:
    """(RSS per process label, summed over a process and all its descendants; their summed PSS).

    RSS counts every shared page (the libraries all the Python processes map) once per process; PSS
    splits shared pages between the processes that map them, so its sum is what the job costs the
    machine. The goal is stated on the RSS sum, the stricter figure."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}, 0
    rss: dict[str, int] = {}
    pss = 0
    for p in procs:
        try:
            name, info = label(p), p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss[name] = rss.get(name, 0) + info.rss
        pss += info.pss
    return rss, pss


def run_project(corpus: Path, store: Path, vocab: int, sample_bytes: int, extra: dict) -> tuple[dict, dict]:
    """(the child's figures, its memory: peak RSS and PSS in MB of its whole process tree sampled
    every 0.25 s, and the RSS per process label at the RSS peak)."""
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        str(corpus),
        str(store),
        str(vocab),
        str(sample_bytes),
        json.dumps(extra),
    ]
    store.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=store.parent)
    mem = {"peak_rss_mb": 0, "peak_pss_mb": 0, "peak_rss_mb_by_process": {}}
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, pss = tree_memory(proc.pid)
            mem["peak_pss_mb"] = max(mem["peak_pss_mb"], round(pss / 2**20))
            if sum(rss.values()) / 2**20 > mem["peak_rss_mb"]:
                mem["peak_rss_mb"] = round(sum(rss.values()) / 2**20)
                mem["peak_rss_mb_by_process"] = {k: round(v / 2**20) for k, v in sorted(rss.items())}
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"the project's tokenisation failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), mem


# ----------------------------------------------------------------------------- the bare loop


def bare_loop(corpus: Path, tokenizer_json: str) -> tuple[int, float]:
    """tokens and seconds of a plain single-process loop over the same files with the same tokenizer."""
    import zstandard
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tokens, started = 0, time.perf_counter()
    for path in sorted(corpus.glob("*.jsonl.zst")):
        with open(path, "rb") as fh:
            reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
            batch = []
            for line in io.TextIOWrapper(reader, encoding="utf-8"):
                batch.append(json.loads(line)["text"])
                if len(batch) == 1024:
                    tokens += sum(
                        len(e.ids) + 1 for e in tok.encode_batch_fast(batch, add_special_tokens=False)
                    )
                    batch = []
            if batch:
                tokens += sum(len(e.ids) + 1 for e in tok.encode_batch_fast(batch, add_special_tokens=False))
    return tokens, time.perf_counter() - started


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=1.0, help="text bytes of the corpus, in GB (1e9)")
    p.add_argument("--files", type=int, default=64, help="number of jsonl.zst shards")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--sample-bytes", type=int, default=32_000_000, help="BPE training sample")
    p.add_argument("--corpus", default=None, help="reuse a corpus folder built by an earlier run")
    p.add_argument("--cpus-per-piece", type=float, default=None, help="data.tokenize_cpus_per_piece")
    p.add_argument("--keep-corpus", action="store_true", help="keep the corpus this run built")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asymptote-bench-tokenize-"))
    started = time.perf_counter()
    corpus = Path(args.corpus) if args.corpus else work / "corpus"
    if not args.corpus:
        log(f"building {args.gb} GB of jsonl.zst in {corpus}")
        build_corpus(args.data, corpus, args.gb, args.files)
    corpus_bytes = int((corpus / "SIZE").read_text())
    store = Path(args.store) if args.store else work / "store"
    log("tokenising through the project (Ray Data job)")
    extra = {} if args.cpus_per_piece is None else {"tokenize_cpus_per_piece": args.cpus_per_piece}
    proj, mem = run_project(corpus, store, args.vocab, args.sample_bytes, extra)
    meta = json.loads((store / proj["rel"] / "meta.json").read_text())
    tokenizer_json = (store / proj["rel"] / "tokenizer.json").read_text()
    project_tokens = sum(meta[f"n_{s}"] for s in ("train", "val", "test"))
    log("tokenising with the bare encode_batch loop")
    bare_tokens, bare_s = bare_loop(corpus, tokenizer_json)
    project_tps, bare_tps = project_tokens / proj["tokenize_s"], bare_tokens / bare_s
    emit(
        {
            "corpus_bytes": corpus_bytes,
            "corpus_compressed_bytes": sum(f.stat().st_size for f in corpus.glob("*.jsonl.zst")),
            "files": len(list(corpus.glob("*.jsonl.zst"))),
            "vocab_size": meta["vocab_size"],
            "dtype": meta["dtype"],
            "tokens": project_tokens,
            "tokens_match_bare": project_tokens == bare_tokens,
            "bytes_per_token": meta["bytes_per_token"],
            "project_tokens_per_s": round(project_tps),
            "bare_tokens_per_s": round(bare_tps),
            "throughput_ratio": round(project_tps / bare_tps, 3),
            "project_tokenize_s": round(proj["tokenize_s"], 1),
            "bare_s": round(bare_s, 1),
            "bpe_train_s": round(proj["bpe_train_s"], 1),
            "ray_start_s": round(proj["ray_start_s"], 1),
            **mem,
            "tokenize_cpus_per_piece": args.cpus_per_piece or DataConfig().tokenize_cpus_per_piece,
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "wall_s": round(time.perf_counter() - started, 1),
        }
    )
    if not args.keep_corpus:  # the corpus and the store are GBs in a temporary folder: never leave them
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
