"""Named model shapes. Parameter counts below assume the byte vocabulary (256) and tied embeddings.

The CPU ladder spans ~0.1M to ~10M parameters at one context length (64) so that losses along the
ladder are comparable in scaling fits. `baby` is nanoGPT's CPU shakespeare_char shape. The `paper-*`
presets are the shapes of "Pre-training under infinite compute"; their names follow the paper's
counts, which include a 128K-entry untied vocabulary; with bytes the same shapes are smaller
(paper-150m is 22.9M parameters here, paper-1.4b 907M), because most of a small model's parameters
in the paper are its embedding and output tables. The names stay the paper's so that a recipe reads
against it; `asymptote presets` prints the real counts.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # CPU ladder (params with vocab 256): ~0.12M, ~0.36M, ~1.0M, ~2.7M, ~10M.
    "cpu-0.1m": dict(n_layer=2, n_head=4, d_model=64, d_ff=172, block_size=64),
    "cpu-0.3m": dict(n_layer=3, n_head=4, d_model=96, d_ff=256, block_size=64),
    "cpu-1m": dict(n_layer=4, n_head=4, d_model=144, d_ff=384, block_size=64),
    "cpu-3m": dict(n_layer=6, n_head=6, d_model=192, d_ff=512, block_size=64),
    "cpu-10m": dict(n_layer=8, n_head=8, d_model=320, d_ff=864, block_size=64),
    # nanoGPT's "baby GPT" (4 layers, 4 heads, 128 wide, block 64); SwiGLU width keeps it at ~0.82M.
    "baby": dict(n_layer=4, n_head=4, d_model=128, d_ff=344, block_size=64),
    # The paper's shapes, for GPUs.
    "paper-150m": dict(n_layer=6, n_head=8, d_model=512, d_ff=1792, block_size=1024),
    "paper-300m": dict(n_layer=12, n_head=12, d_model=768, d_ff=2688, block_size=1024),
    "paper-600m": dict(n_layer=24, n_head=16, n_kv_head=8, d_model=1024, d_ff=3584, block_size=1024),
    "paper-1.4b": dict(n_layer=16, n_head=16, n_kv_head=8, d_model=2048, d_ff=7168, block_size=1024),
}

CPU_LADDER = ["cpu-0.1m", "cpu-0.3m", "cpu-1m", "cpu-3m", "cpu-10m"]


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; allowed: {', '.join(PRESETS)}")
    return {"preset": name, **PRESETS[name]}


def preset_note() -> str:
    """What `asymptote presets` prints under the table: why the paper-* counts differ from their names."""
    return (
        "Counts are with the byte vocabulary (256, tied). The paper-* names are the paper's counts, which\n"
        "include a 128K-token untied vocabulary; the same shapes with bytes are the sizes above."
    )
