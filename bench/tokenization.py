"""Tokenising a 1 GB corpus: the project's Ray Data job vs a bare `encode_batch` loop, side by side.

Builds (in a temporary folder outside the repo) zstd-compressed jsonl shards of at least --gb GB of
text from what is at hand (--data, e.g. tinyshakespeare, and the builtin python-docs text, records of
randomly drawn paragraphs with a per-record id), lets the project train a byte-level BPE of --vocab
tokens on a sample of the training split, then tokenises the corpus through the project
(tasks.tokenize on a local Ray, in a child process whose whole process tree is sampled for RSS) and
with a bare single-process loop (zstd stream -> json -> tokenizers' encode_batch, Rust threads on)
over the same files and the same tokenizer, run once before and once after the project's job (their
mean is the reference). The BPE is trained in a child of its own first, so the bare loop before
has it; peak_rss_mb is the largest of the children's peaks.

One round's ratio moves by several percent with this machine's speed, so --rounds R repeats the
round (bare, project, bare) R times, each job into a fresh store that holds only the BPE, and the
ratio is the rounds' mean with its Student-t 95% interval (throughput_ratio_ci95).

    nice -n 10 python bench/tokenization.py --data ../shared/data/tinyshakespeare.txt --gb 1 --rounds 8
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
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


def cpu_by_label(cpu: dict[int, tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, seconds in cpu.values():
        out[name] = out.get(name, 0.0) + seconds
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


class MemorySampler:
    """Samples a process tree (a process and all its descendants) while the `with` block runs: peak
    RSS summed over the tree, with its split per process label; peak PSS; each process's CPU seconds.

    RSS counts every shared page (the libraries all the Python processes map) once per process; PSS
    splits shared pages between the processes that map them, so its sum is what the job costs the
    machine. The goal is stated on the RSS sum, the stricter figure.

    The sampler shares the CPUs with what it measures, and a Ray job's tree has ~12 processes against
    the bare loop's one, so each sample is kept cheap and the sampler's own CPU is reported
    (sampler_cpu_s). On a Ray Data job's tree, walking the tree (psutil reads every
    process's stat to find children) takes ~2 ms, PSS (smaps_rollup: the kernel walks each process's page
    tables) ~31 ms, one RSS read per known process ~0.4 ms in all. So: RSS every 0.25 s; the tree, its
    labels (a Ray worker's title changes when it takes a task) and CPU times every 1 s; PSS every 4 s,
    or (at most once a second) when RSS has grown 2% since the last PSS. Sampling everything every
    0.25 s, and PSS at every new RSS peak, would cost several percent of a core on a Ray Data tree, a
    cost charged to the project's throughput."""

    RSS_EVERY_S, SCAN_EVERY, PSS_EVERY_S, PSS_WHILE_GROWING_EVERY_S, PSS_AT_GROWTH = 0.25, 4, 4.0, 1.0, 0.02

    def __init__(self, pid: int):
        self.pid, self.done = pid, threading.Event()
        self.peak_rss, self.peak_pss, self.at_peak = 0.0, 0.0, {}
        self.cpu: dict[int, tuple[str, float]] = {}
        self.cpu_s = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _scan(self) -> dict[int, tuple[object, str]]:
        """{pid: (process, label)} of the tree now; records each one's CPU seconds so far (a process's
        last moment before it exits is missed)."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        out = {}
        for p in procs:
            try:
                name, times = label(p), p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if name == "ray::IDLE" and p.pid in self.cpu:  # a worker between tasks keeps its task's name
                name = self.cpu[p.pid][0]
            out[p.pid] = (p, name)
            self.cpu[p.pid] = (name, times.user + times.system)
        return out

    @staticmethod
    def _sum(procs: dict, read) -> dict[str, int]:
        import psutil

        out: dict[str, int] = {}
        for p, name in procs.values():
            try:
                out[name] = out.get(name, 0) + read(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def _run(self) -> None:
        started, procs, n = time.thread_time(), {}, 0
        last_pss, rss_at_pss = float("-inf"), 0.0
        while not self.done.is_set():
            if n % self.SCAN_EVERY == 0:
                procs = self._scan()
            rss = self._sum(procs, lambda p: p.memory_info().rss)
            rss_mb, now = sum(rss.values()) / 2**20, time.monotonic()
            if rss_mb > self.peak_rss:
                self.peak_rss, self.at_peak = rss_mb, {k: round(v / 2**20) for k, v in sorted(rss.items())}
            # A Ray tree's RSS creeps up by kilobytes all the time: a "new peak" triggers PSS only
            # when it is well above the RSS at the last PSS reading.
            grown = rss_mb > rss_at_pss * (1 + self.PSS_AT_GROWTH)
            if now - last_pss >= (self.PSS_WHILE_GROWING_EVERY_S if grown else self.PSS_EVERY_S):
                pss = self._sum(procs, lambda p: p.memory_full_info().pss)
                self.peak_pss = max(self.peak_pss, sum(pss.values()) / 2**20)
                last_pss, rss_at_pss = now, rss_mb
            n += 1
            self.done.wait(self.RSS_EVERY_S)
        self.cpu_s = time.thread_time() - started

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
            "sampler_cpu_s": round(self.cpu_s, 1),
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


def one_round(corpus: Path, store: Path, tokenizer_json: str, args, extra: dict) -> dict:
    """The bare loop, the project's job (into `store`, which holds the BPE and no shards), the bare
    loop again; the round's ratio is the project's tokens/s over the bare loop's at the mean of its
    two times. The bracketing cancels a steady drift of this machine's speed (~10% over minutes)."""
    bare_runs, bare_mems = [], []

    def bare(when: str) -> None:
        log(f"tokenising with the bare encode_batch loop ({when})")
        with MemorySampler(os.getpid()) as sampler:  # sampled as the project's job is
            bare_runs.append(bare_loop(corpus, tokenizer_json))
        bare_mems.append(sampler.figures())

    bare("before")
    log("tokenising through the project (Ray Data job)")
    proj, mem = run_project(corpus, store, args.vocab, args.sample_bytes, extra, "tokenize")
    bare("after")
    meta = json.loads((store / proj["rel"] / "meta.json").read_text())
    tokens = sum(meta[f"n_{s}"] for s in ("train", "val", "test"))
    bare_s = statistics.mean(s for _, s in bare_runs)
    project_tps, bare_tps = tokens / proj["tokenize_s"], bare_runs[0][0] / bare_s
    return {
        "meta": meta,
        "tokens": tokens,
        "tokens_match_bare": all(tokens == n for n, _ in bare_runs),
        "project_tokens_per_s": project_tps,
        "bare_tokens_per_s": bare_tps,
        "throughput_ratio": project_tps / bare_tps,
        "project_s": proj["tokenize_s"],
        "ray_start_s": proj["ray_start_s"],
        "bare_s_before_after": [round(s, 1) for _, s in bare_runs],
        "mem": mem,
        "bare_peak_rss_mb": max(m["peak_rss_mb"] for m in bare_mems),
        "bare_sampler_cpu_s": [m["sampler_cpu_s"] for m in bare_mems],
    }


def mean_interval(xs: list[float], level: float = 0.95) -> list[float] | None:
    """Student-t interval of the mean of independent rounds; None for one round (no spread to judge)."""
    if len(xs) < 2:
        return None
    from scipy import stats

    mean = statistics.mean(xs)
    half = stats.t.ppf((1 + level) / 2, len(xs) - 1) * statistics.stdev(xs) / len(xs) ** 0.5
    # Four places: at three, a lower end of 0.8996 printed as 0.9 and read as meeting a goal of 0.9.
    return [round(mean - half, 4), round(mean + half, 4)]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=1.0, help="text bytes of the corpus, in GB (1e9)")
    p.add_argument("--files", type=int, default=64, help="number of jsonl.zst shards")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--sample-bytes", type=int, default=32_000_000, help="BPE training sample")
    p.add_argument("--corpus", default=None, help="reuse a corpus folder built by an earlier run")
    p.add_argument("--cpus-per-piece", type=float, default=None, help="data.tokenize_cpus_per_piece")
    p.add_argument("--rounds", type=int, default=1, help="independent rounds (bare, project, bare)")
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
    if args.rounds > 1:  # every round tokenises into a fresh copy of the store that holds only the BPE
        shutil.copytree(store, work / "store-bpe")
    rounds = []
    for k in range(args.rounds):
        round_store = store if k == 0 else work / f"store-round-{k}"
        if k:
            shutil.copytree(work / "store-bpe", round_store)
        log(f"round {k + 1} of {args.rounds}")
        rounds.append(one_round(corpus, round_store, tokenizer_json, args, extra))
        # Logged as each round ends, so a long run stopped early keeps what it measured.
        log(f"round {k + 1}: throughput_ratio {rounds[-1]['throughput_ratio']:.3f}")
        if k:  # a round's shards are as large as the corpus: keep only the first round's
            shutil.rmtree(round_store, ignore_errors=True)
    first, ratios = rounds[0], [r["throughput_ratio"] for r in rounds]
    meta = first["meta"]
    worst = max(rounds, key=lambda r: r["mem"]["peak_rss_mb"])
    emit(
        {
            "corpus_bytes": corpus_bytes,
            "corpus_compressed_bytes": sum(f.stat().st_size for f in corpus.glob("*.jsonl.zst")),
            "files": len(list(corpus.glob("*.jsonl.zst"))),
            "vocab_size": meta["vocab_size"],
            "dtype": meta["dtype"],
            "tokens": first["tokens"],
            "tokens_match_bare": all(
                r["tokens_match_bare"] and r["tokens"] == first["tokens"] for r in rounds
            ),
            "bytes_per_token": meta["bytes_per_token"],
            "project_tokens_per_s": round(statistics.mean(r["project_tokens_per_s"] for r in rounds)),
            "bare_tokens_per_s": round(statistics.mean(r["bare_tokens_per_s"] for r in rounds)),
            "throughput_ratio": round(statistics.mean(ratios), 3),
            "throughput_ratio_ci95": mean_interval(ratios),
            "throughput_ratio_by_round": [round(x, 3) for x in ratios],
            "project_tokenize_s": [round(r["project_s"], 1) for r in rounds],
            "bare_s_before_after": [r["bare_s_before_after"] for r in rounds],
            "bpe_train_s": round(bpe["bpe_train_s"], 1),
            "ray_start_s": [round(r["ray_start_s"], 1) for r in rounds],
            **worst["mem"],  # the round with the highest peak: its split per process and its CPU table
            "peak_rss_mb": max(bpe_mem["peak_rss_mb"], *(r["mem"]["peak_rss_mb"] for r in rounds)),
            "peak_rss_mb_by_round": [r["mem"]["peak_rss_mb"] for r in rounds],
            "bpe_peak_rss_mb": bpe_mem["peak_rss_mb"],
            "bare_peak_rss_mb": max(r["bare_peak_rss_mb"] for r in rounds),
            "bare_sampler_cpu_s": [r["bare_sampler_cpu_s"] for r in rounds],
            "rounds": args.rounds,
            "tokenize_cpus_per_piece": args.cpus_per_piece or DataConfig().tokenize_cpus_per_piece,
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "wall_s": round(time.perf_counter() - started, 1),
        },
        args.save,
        args.data,
    )
    if not args.keep_corpus:  # the corpus and the store are GBs in a temporary folder: never leave them
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
