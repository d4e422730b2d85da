"""Distributed tokenisation on Ray Data: every input file is a piece, pieces run wherever there is a CPU.

The work itself is pure (asymptote.shards.tokenize_piece: read one file in streaming batches, encode,
write its shards, then its marker), so memory is bounded by one batch per running piece whatever
the corpus size, a killed job keeps every finished piece, and one manifest commits the set at the
end. On a laptop the same code runs on the local Ray. A corpus already tokenised is found by its
key and not read again.
"""

from __future__ import annotations

import logging

from asymptote.config import DataConfig
from asymptote.corpus import SPLITS
from asymptote.infra.cluster import ray_ready
from asymptote.shards import Plan, commit_dataset, dataset_key, make_plan, source_fingerprint, tokenize_piece
from asymptote.store import Store, layout

log = logging.getLogger(__name__)


def _tokenize_row(row: dict, plan: Plan) -> dict:
    marker = tokenize_piece(plan, int(row["piece"]))
    return {"piece": marker["piece"], "tokens": sum(marker[s]["tokens"] for s in SPLITS)}


def run_pieces(plan: Plan, pieces: list[int], concurrency: int | None = None) -> int:
    """Tokenise these pieces as a Ray Data job, one task per piece; returns the tokens written."""
    import ray  # here, not at the top: a fully cached call never needs Ray

    ray_ready()
    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    ds = ray.data.from_items([{"piece": i} for i in pieces], override_num_blocks=len(pieces))
    ds = ds.map(
        _tokenize_row,
        fn_kwargs={"plan": plan},
        num_cpus=1,
        concurrency=max(1, min(concurrency or cpus, len(pieces))),
    )
    total = 0
    for done, row in enumerate(ds.iter_rows(), 1):
        total += row["tokens"]
        log.info("tokenised piece %s (%d/%d), %d tokens so far", row["piece"], done, len(pieces), total)
    return total


def tokenize_corpus(
    cfg: DataConfig, store: Store, storage_options: dict | None = None, concurrency: int | None = None
) -> tuple[str, dict]:
    """(data artifact path, stats): tokenise cfg's corpus on Ray Data unless its key is committed.

    stats: pieces (all), ran (tokenised by this call; fewer after a kill), tokens (this call).
    Ray starts (or is joined) only when there are pieces to tokenise.
    """
    opts = storage_options if storage_options is not None else store.options
    rel = layout("data", key=dataset_key(cfg, source_fingerprint(cfg.source, opts), opts))
    if store.has(rel):
        return rel, {"pieces": None, "ran": 0, "tokens": 0}
    plan = make_plan(cfg, store, opts)
    todo = plan.todo()
    tokens = run_pieces(plan, todo, concurrency) if todo else 0
    return commit_dataset(plan), {"pieces": len(plan.files), "ran": len(todo), "tokens": tokens}
