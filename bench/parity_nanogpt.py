"""nanoGPT parity: the CPU "baby GPT" budget through asymptote's own pretrain flow.

nanoGPT's README trains shakespeare_char on CPU with 4 layers, 4 heads, 128 wide, block 64, batch 12,
2000 iterations (1.54M tokens), lr 1e-3 decaying to 1e-4 after 100 warmup steps, beta2 0.99,
dropout 0; its script reaches 1.886 validation loss on this machine. We train the same budget with
the same optimiser settings on a Llama-style model of at most 0.85M parameters (byte vocabulary).

    python bench/parity_nanogpt.py --data ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import time

from common import emit, parser, store_uri

NANOGPT_VAL_LOSS = 1.886  # measured with nanoGPT's own script on this machine (issue 2)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    args = p.parse_args()
    from asymptote.config import PretrainConfig
    from asymptote.flows.pretraining import pretrain

    cfg = PretrainConfig.model_validate(
        {
            "name": "nanogpt-baby",
            "model": {"preset": "baby"},
            "data": {"source": args.data},
            "train": {
                "max_steps": args.steps,
                "batch_size": 12,
                "lr": 1e-3,
                "min_lr_ratio": 0.1,
                "warmup_steps": 100,
                "beta2": 0.99,
                "weight_decay": 0.1,
                "eval_every": 500,
            },
            "compute": {"cpus_per_worker": 2},
            "store": {"uri": store_uri(args.store)},
        }
    )
    started = time.time()
    res = pretrain(cfg)
    s = res.run.summary
    print(
        f"val_loss {res.metrics['val_loss']:.4f} (nanoGPT {NANOGPT_VAL_LOSS}) params {s['params']:,} "
        f"tokens {s['tokens']:,} in {time.time() - started:.0f} s; run {res.run.uri}"
    )
    emit(
        {
            "val_loss": res.metrics["val_loss"],
            "params": s["params"],
            "tokens": s["tokens"],
            "steps": s["steps"],
            "nanogpt_val_loss": NANOGPT_VAL_LOSS,
            "beats_nanogpt": res.metrics["val_loss"] <= NANOGPT_VAL_LOSS,
            "wall_s": round(time.time() - started, 1),
            "run_uri": res.run.uri,
        }
    )


if __name__ == "__main__":
    main()
