"""nanoGPT parity: the CPU "baby GPT" budget through asymptote's own pretrain flow.

nanoGPT's README trains shakespeare_char on CPU with 4 layers, 4 heads, 128 wide, block 64, batch 12,
2000 iterations (1.54M tokens), lr 1e-3 decaying to 1e-4 after 100 warmup steps, beta2 0.99,
dropout 0; its script reaches 1.886 validation loss on this machine. We train the same budget with
the same optimiser settings on a Llama-style model of at most 0.85M parameters (byte vocabulary).
The split is nanoGPT's (the last 10% of the text is validation, no test split: data.test_fraction=0),
and validation bits per byte are printed beside the loss. `--tokenizer bpe --vocab-size N` runs the
same budget on a byte-level BPE of N tokens trained on the training text (the model's vocabulary
follows: model.vocab_size is left unset); its per-token loss is not comparable with nanoGPT's, its val_bpb is.

    python bench/parity_nanogpt.py --data ../shared/data/tinyshakespeare.txt
    python bench/parity_nanogpt.py --data ../shared/data/tinyshakespeare.txt --tokenizer bpe --vocab-size 512
"""

from __future__ import annotations

import time

from common import emit, parser, store_uri

NANOGPT_VAL_LOSS = 1.886  # nanoGPT's own script's validation loss in this setting (the reference)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument(
        "--tokenizer", default="byte", help="byte (nanoGPT's characters), bpe, or a tokenizer.json"
    )
    p.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary (with --tokenizer bpe)")
    args = p.parse_args()
    from asymptote.config import PretrainConfig
    from asymptote.flows.pretraining import pretrain

    cfg = PretrainConfig.model_validate(
        {
            "name": "nanogpt-baby",
            "model": {"preset": "baby"},  # model.vocab_size unset: the data's tokenizer's
            "data": {
                "source": args.data,
                "test_fraction": 0,
                "tokenizer": args.tokenizer,
                "vocab_size": args.vocab_size,
            },
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
        f"val_loss {res.metrics['val_loss']:.4f} (nanoGPT {NANOGPT_VAL_LOSS}) "
        f"val_bpb {res.metrics['val_bpb']:.4f} params {s['params']:,} "
        f"tokens {s['tokens']:,} in {time.time() - started:.0f} s; run {res.run.uri}"
    )
    emit(
        {
            "val_loss": res.metrics["val_loss"],
            "val_bpb": res.metrics["val_bpb"],
            "tokenizer": args.tokenizer,
            "vocab_size": res.data.vocab_size,
            "params": s["params"],
            "tokens": s["tokens"],
            "steps": s["steps"],
            "nanogpt_val_loss": NANOGPT_VAL_LOSS,
            "beats_nanogpt": res.metrics["val_loss"] <= NANOGPT_VAL_LOSS
            if args.tokenizer == "byte"
            else None,
            "wall_s": round(time.time() - started, 1),
            "run_uri": res.run.uri,
        },
        args.save,
        args.data,
    )


if __name__ == "__main__":
    main()
