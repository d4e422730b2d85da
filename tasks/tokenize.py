"""Distributed tokenisation on Ray Data: every input file is a piece, pieces run wherever there is a CPU.

The work itself is pure (asymptote.shards.tokenize_piece: read one file in streaming batches, encode,
write its shards, then its marker), so memory is bounded by three batches per running piece whatever
the corpus size, a killed job keeps every finished piece, and one manifest commits the set at the
end. Consecutive pieces are grouped into tasks of about data.tokenize_task_bytes of input, so many
small files do not each pay a worker's start. Each task reserves data.tokenize_cpus_per_piece CPUs
and runs that many encoder threads, which sets how many Python workers (the bulk of the job's memory)
a node holds; a BPE still to train is trained first in a worker of its own that exits when done, not
in the driver. On a laptop the same code runs on the local Ray. A corpus already tokenised is found
by its key and not read again.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os

from asymptote.config import DataConfig
from asymptote.infra.cluster import ray_ready
from asymptote.infra.remotes import remote
from asymptote.shards import (
    Plan,
    commit_dataset,
    corpus_bytes,
    corpus_rel,
    make_plan,
    piece_tokens,
    resolve_tokenizer,
    tokenize_here,
    tokenize_piece,
    tokenizer_rel,
)
from asymptote.store import Store

log = logging.getLogger(__name__)


def _tokenize_row(row: dict, plan: Plan) -> dict:
    threads = max(1, round(plan.cfg.tokenize_cpus_per_piece))
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # read when the encoder's pool starts
    pieces, tokens = [int(p) for p in row["pieces"]], 0
    for piece in pieces:
        tokens += piece_tokens(tokenize_piece(plan, piece))
        release_memory()
    return {"first": pieces[0], "pieces": len(pieces), "tokens": tokens}


def release_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere) after a
    piece: the batches' buffers are freed but glibc keeps the pages, and the worker lives on."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def pieces_at_once(cpus: float, per_piece: float, pieces: int, limit: int | None = None) -> int:
    """How many pieces run together: as many as the cluster's CPUs hold at per_piece each, at most
    `limit` (if given) and the number of pieces, at least one."""
    return max(1, min(int(cpus // per_piece) or 1, limit or pieces, pieces))


def task_groups(sizes: list[int], target: int, slots: int) -> list[list[int]]:
    """Consecutive positions of `sizes` (input bytes per piece) grouped into tasks of about `target`
    bytes, at least `slots` tasks (every slot gets work) and at most one per piece; target 0: one
    piece per task. Groups are cut where the running total crosses a multiple of the share."""
    n = len(sizes)
    total = sum(sizes)
    tasks = n if target <= 0 or total <= 0 else min(n, max(slots, math.ceil(total / target)))
    if tasks >= n:
        return [[i] for i in range(n)]
    share, groups, before = total / tasks, [[] for _ in range(tasks)], 0
    for i, size in enumerate(sizes):
        groups[min(tasks - 1, int((before + size / 2) / share))].append(i)
        before += size
    return [g for g in groups if g]


def piece_sizes(plan: Plan, pieces: list[int]) -> list[int]:
    """Input bytes of each piece as stored (0 for a builtin text, which is one small piece)."""
    if plan.cfg.source.startswith("builtin:"):
        return [0] * len(pieces)
    fs = plan.fs()
    return [int(fs.size(plan.files[i].path) or 0) for i in pieces]


def run_pieces(plan: Plan, pieces: list[int], concurrency: int | None = None) -> int:
    """Tokenise these pieces as a Ray Data job, consecutive pieces grouped into tasks of about
    data.tokenize_task_bytes; returns the tokens written."""
    import ray  # here, not at the top: a fully cached call never needs Ray

    ray_ready()
    cpus = ray.available_resources().get("CPU", 1) or 1
    per_piece = min(plan.cfg.tokenize_cpus_per_piece, cpus)
    slots = pieces_at_once(cpus, per_piece, len(pieces), concurrency)
    sizes = piece_sizes(plan, pieces)
    groups = [[pieces[j] for j in g] for g in task_groups(sizes, plan.cfg.tokenize_task_bytes, slots)]
    ds = ray.data.from_items([{"pieces": g} for g in groups], override_num_blocks=len(groups))
    ds = ds.map(
        _tokenize_row,
        fn_kwargs={"plan": plan},
        num_cpus=per_piece,  # workers are reused from task to task (flat: one tokenizer per process)
        compute=ray.data.TaskPoolStrategy(size=min(slots, len(groups))),
    )
    total, done = 0, 0
    for row in ds.iter_rows():
        total, done = total + row["tokens"], done + row["pieces"]
        log.info("tokenised pieces from %s (%d/%d), %d tokens so far", row["first"], done, len(pieces), total)
    return total


def _train_tokenizer(cfg: DataConfig, store: Store, storage_options: dict) -> None:
    resolve_tokenizer(cfg, store, storage_options)


def ensure_tokenizer(cfg: DataConfig, store: Store, storage_options: dict) -> None:
    """Train cfg's BPE (if it names one not yet in the store) in a Ray worker that exits afterwards
    (max_calls=1), so the trainer's memory is returned before the tokenisation job starts."""
    rel = tokenizer_rel(cfg, storage_options)
    if rel is None or store.has(rel):
        return
    import ray

    ray_ready()
    train = remote(_train_tokenizer, num_cpus=1, max_calls=1)
    ray.get(train.remote(cfg, store, storage_options))
    store.invalidate()


def tokenize_corpus(
    cfg: DataConfig, store: Store, storage_options: dict | None = None, concurrency: int | None = None
) -> tuple[str, dict]:
    """(data artifact path, stats): tokenise cfg's corpus unless its key is committed: on Ray Data, or
    in this process when it is no larger than data.tokenize_in_process_max_bytes.

    stats: pieces (all), ran (tokenised by this call; fewer after a kill), tokens (this call).
    Ray starts (or is joined) only when a Ray Data job has pieces to tokenise.
    """
    opts = storage_options if storage_options is not None else store.options
    rel = corpus_rel(cfg, opts)
    if store.has(rel):
        return rel, {"pieces": None, "ran": 0, "tokens": 0}
    limit = cfg.tokenize_in_process_max_bytes
    in_process = corpus_bytes(cfg, opts, stop_above=limit) <= limit
    if not in_process:  # else make_plan trains a BPE still to train here, on a small corpus
        ensure_tokenizer(cfg, store, opts)
    plan = make_plan(cfg, store, opts)
    todo = plan.todo()
    if in_process:
        tokens = tokenize_here(plan, todo)
    else:
        tokens = run_pieces(plan, todo, concurrency) if todo else 0
    return commit_dataset(plan), {"pieces": len(plan.files), "ran": len(todo), "tokens": tokens}
