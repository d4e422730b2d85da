"""Tokenising a 1 GB corpus: the project's Ray Data job vs a bare `encode_batch` loop, side by side.

Builds (in a temporary folder outside the repo) zstd-compressed jsonl shards of at least --gb GB of
text from what is at hand (--data, e.g. tinyshakespeare, and the builtin python-docs text, records of
randomly drawn paragraphs with a per-record id), lets the project train a byte-level BPE of --vocab
tokens on a sample of the training split, then tokenises the corpus through the project
(tasks.tokenize on a local Ray, in a child process whose whole process tree is sampled for RSS) and
with a bare single-process loop (zstd stream -> json -> tokenizers' encode_batch, Rust threads on)
over the same files and the same tokenizer, run once before and once after the project's job (their
mean is the reference). The BPE is trained in a child of its own first, so the bare loop before
has it; peak_rss_mb is the larger of the two children's peaks.

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


# Run as `python -c` in a temporary folder, so the job's process tree is the child's alone. Phase
# "bpe" trains the tokenizer (as a tokenisation job does first); "tokenize" finds it and tokenises.
CHILD = """
import json, os, sys, time
from asymptote.config import DataConfig
from asymptote.infra.cluster import ray_session
from asymptote.shards import tokenizer_rel
from asymptote.store import Store
from asymptote.tasks.tokenize import ensure_tokenizer, tokenize_corpus

corpus, store, vocab, sample = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
extra, phase = json.loads(sys.argv[5]), sys.argv[6]
cfg = DataConfig(source=corpus, tokenizer="bpe", vocab_size=vocab, tokenizer_sample_bytes=sample, **extra)
st = Store(store)
t0 = time.perf_counter()
with ray_session(num_cpus=os.cpu_count()):
    t1 = time.perf_counter()
    ensure_tokenizer(cfg, st, st.options)
    t2 = time.perf_counter()
    out = {"ray_start_s": t1 - t0, "bpe_train_s": t2 - t1, "tokenizer_rel": tokenizer_rel(cfg, st.options)}
    if phase == "tokenize":
        rel, stats = tokenize_corpus(cfg, st)
        out |= {"rel": rel, "stats": stats, "tokenize_s": time.perf_counter() - t2}
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


def tree_memory(
    pid: int, cpu: dict[int, tuple[str, float]] | None = None, pss: bool = True
) -> tuple[dict[str, int], int]:
    """(RSS per process label, summed over a process and all its descendants; their summed PSS).

    RSS counts every shared page (the libraries all the Python processes map) once per process; PSS
    splits shared pages between the processes that map them, so its sum is what the job costs the
    machine. The goal is stated on the RSS sum, the stricter figure. PSS reads every process's smaps
    (~20 ms of CPU for a Ray job's tree, against ~2 ms without), so `pss=False` skips it (returns
    0). `cpu`, if given, is updated with each process's label and CPU seconds so far (a process's
    last moments before it exits are missed)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}, 0
    rss: dict[str, int] = {}
    total_pss = 0
    for p in procs:
        try:
            name = label(p)
            rss[name] = rss.get(name, 0) + p.memory_info().rss
            total_pss += p.memory_full_info().pss if pss else 0
            if cpu is not None:
                times = p.cpu_times()
                cpu[p.pid] = (name, times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return rss, total_pss


def cpu_by_label(cpu: dict[int, tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, seconds in cpu.values():
        out[name] = out.get(name, 0.0) + seconds
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


class MemorySampler:
    """Samples a process tree while the `with` block runs: peak RSS (every 0.25 s) with its split per
    process label, peak PSS (every 2 s and at each new RSS peak: reading smaps costs ~7x more) and
    each process's CPU seconds. The bare loop is sampled the same way, so both sides pay its cost."""

    def __init__(self, pid: int):
        self.pid, self.done = pid, threading.Event()
        self.peak_rss, self.peak_pss, self.at_peak = 0.0, 0.0, {}
        self.cpu: dict[int, tuple[str, float]] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.done.is_set():
            rss, _ = tree_memory(self.pid, self.cpu, pss=False)
            rss_mb = sum(rss.values()) / 2**20
            if n % 8 == 0 or rss_mb > self.peak_rss:
                self.peak_pss = max(self.peak_pss, tree_memory(self.pid, pss=True)[1] / 2**20)
            if rss_mb > self.peak_rss:
                self.peak_rss, self.at_peak = rss_mb, {k: round(v / 2**20) for k, v in sorted(rss.items())}
            n += 1
            self.done.wait(0.25)

    def __enter__(self) -> "MemorySampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    def figures(self) -> dict:
        return {
            "peak_rss_mb": round(self.peak_rss),
            "peak_pss_mb": round(self.peak_pss),
            "peak_rss_mb_by_process": self.at_peak,
            "cpu_s_by_process": cpu_by_label(self.cpu),
        }


def run_project(
    corpus: Path, store: Path, vocab: int, sample_bytes: int, extra: dict, phase: str
) -> tuple[dict, dict]:
    """(the child's figures, its memory and CPU: MemorySampler's figures over its whole process tree)."""
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        str(corpus),
        str(store),
        str(vocab),
        str(sample_bytes),
        json.dumps(extra),
        phase,
    ]
    store.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=store.parent)
    with MemorySampler(proc.pid) as mem:
        out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the project's tokenisation failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), mem.figures()


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
    extra = {} if args.cpus_per_piece is None else {"tokenize_cpus_per_piece": args.cpus_per_piece}
    log("training the BPE through the project")
    bpe, bpe_mem = run_project(corpus, store, args.vocab, args.sample_bytes, extra, "bpe")
    tokenizer_json = (store / bpe["tokenizer_rel"] / "tokenizer.json").read_text()
    # The bare loop runs before and after the project's job and its mean is the reference: this
    # machine's speed drifts by ~10% over minutes, and bracketing cancels a steady drift.
    bare_runs = []
    log("tokenising with the bare encode_batch loop (before)")
    with MemorySampler(os.getpid()) as bare_mem:  # the same sampling cost the project's run pays
        bare_runs.append(bare_loop(corpus, tokenizer_json))
    log("tokenising through the project (Ray Data job)")
    proj, mem = run_project(corpus, store, args.vocab, args.sample_bytes, extra, "tokenize")
    log("tokenising with the bare encode_batch loop (after)")
    with MemorySampler(os.getpid()):
        bare_runs.append(bare_loop(corpus, tokenizer_json))
    meta = json.loads((store / proj["rel"] / "meta.json").read_text())
    project_tokens = sum(meta[f"n_{s}"] for s in ("train", "val", "test"))
    bare_tokens, bare_s = bare_runs[0][0], sum(s for _, s in bare_runs) / len(bare_runs)
    project_tps, bare_tps = project_tokens / proj["tokenize_s"], bare_tokens / bare_s
    emit(
        {
            "corpus_bytes": corpus_bytes,
            "corpus_compressed_bytes": sum(f.stat().st_size for f in corpus.glob("*.jsonl.zst")),
            "files": len(list(corpus.glob("*.jsonl.zst"))),
            "vocab_size": meta["vocab_size"],
            "dtype": meta["dtype"],
            "tokens": project_tokens,
            "tokens_match_bare": all(project_tokens == n for n, _ in bare_runs),
            "bytes_per_token": meta["bytes_per_token"],
            "project_tokens_per_s": round(project_tps),
            "bare_tokens_per_s": round(bare_tps),
            "throughput_ratio": round(project_tps / bare_tps, 3),
            "project_tokenize_s": round(proj["tokenize_s"], 1),
            "bare_s": round(bare_s, 1),
            "bare_s_before_after": [round(s, 1) for _, s in bare_runs],
            "bpe_train_s": round(bpe["bpe_train_s"], 1),
            "ray_start_s": round(proj["ray_start_s"], 1),
            **mem,
            "peak_rss_mb": max(mem["peak_rss_mb"], bpe_mem["peak_rss_mb"]),  # the job's two phases
            "bpe_peak_rss_mb": bpe_mem["peak_rss_mb"],
            "bare_peak_rss_mb": bare_mem.figures()["peak_rss_mb"],
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
