"""Export to Hugging Face: a model trained through the project, exported, loaded back by transformers.

Trains a small model with the pretrain flow (or takes `--ref`, a committed run or soup of `--store`),
exports it with `asymptote.export_hf.export_model`, loads the directory with
`AutoModelForCausalLM.from_pretrained` (no custom code), and compares, in fp32 on CPU:

- logits on a fixed batch (the first windows of the test split): `max_abs_logit_diff` (goal <= 1e-4);
- greedy generation of 64 new tokens from prompts cut from test text: asymptote's own sampler
  (`asymptote.sampling.generate`, KV-cached, temperature 0) against HF `generate(do_sample=False)`;
- the HF tokenizer against the project's on the test text (`tokenizer_equal`).

    python bench/export_hf.py --data ../shared/data/tinyshakespeare.txt
    python bench/export_hf.py --data ../shared/data/tinyshakespeare.txt --tokenizer bpe --vocab-size 512
    python bench/export_hf.py --data unused --store STORE --ref runs/<key>
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time

from common import emit, parser, store_uri

log = logging.getLogger("bench.export_hf")
NEW_TOKENS = 64
PROMPT_TOKENS = 16


def train(args) -> tuple[str, str]:
    """A small model through the pretrain flow; returns (store uri, run rel)."""
    from asymptote.config import PretrainConfig
    from asymptote.flows.pretraining import pretrain

    model = {"preset": "cpu-0.3m", "block_size": 128}
    cfg = PretrainConfig.model_validate(
        {
            "name": "export-bench",
            "model": model | ({} if args.tokenizer == "byte" else {"vocab_size": args.vocab_size}),
            "data": {"source": args.data, "tokenizer": args.tokenizer, "vocab_size": args.vocab_size},
            "train": {
                "max_steps": args.steps,
                "batch_size": 16,
                "warmup_steps": 20,
                "eval_every": args.steps,
            },
            "store": {"uri": store_uri(args.store)},
        }
    )
    res = pretrain(cfg)
    log.info("trained %s: val loss %.4f", res.run.rel, res.run.val_loss)
    return cfg.store.uri, res.run.rel


def fixed_batch(store, data: str, block: int, rows: int):
    """The first `rows` non-overlapping windows of the test split (validation if there is no test)."""
    import torch

    from asymptote.shards import load_split

    tokens = load_split(store, data, "test")
    tokens = tokens if len(tokens) > rows * block else load_split(store, data, "val")
    return torch.from_numpy(tokens[: rows * block].astype("int64")).view(rows, block)


def compare_logits(ours, hf, batch) -> dict:
    import torch

    from asymptote.model import lm_loss

    with torch.no_grad():
        a, b = ours(batch), hf(batch).logits
    x, y = batch[:, :-1], batch[:, 1:]
    return {
        "max_abs_logit_diff": (a - b).abs().max().item(),
        "max_abs_logit": a.abs().max().item(),
        "batch_loss": lm_loss(a[:, :-1].contiguous(), y).item(),
        "batch_loss_hf": lm_loss(b[:, : x.shape[1]].contiguous(), y).item(),
    }


def compare_generation(ours, hf, batch) -> dict:
    """Greedy continuations (NEW_TOKENS) of the batch's first tokens by both implementations."""
    import torch
    from transformers import GenerationConfig

    from asymptote.sampling import generate

    # A sequence holds at most block_size + 1 tokens: a short context leaves a shorter prompt.
    n = min(PROMPT_TOKENS, ours.cfg.block_size + 1 - NEW_TOKENS)
    if n < 1:
        raise SystemExit(f"block_size={ours.cfg.block_size} cannot hold a prompt and {NEW_TOKENS} new tokens")
    prompt = batch[:, :n]
    mine = generate(ours, prompt, n + NEW_TOKENS, temperature=0)
    greedy = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0)
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=greedy)
    same = theirs.shape == mine.shape and bool((theirs == mine).all())
    agree = (theirs[:, n:] == mine[:, n:]).float().mean().item() if not same else 1.0
    return {"generate_equal": same, "generate_token_agreement": agree, "generated_shape": list(mine.shape)}


def compare_tokenizers(store, data: str, out_dir: str) -> bool | None:
    """The exported tokenizer encodes the test text to the project's own ids."""
    from transformers import AutoTokenizer

    from asymptote.shards import load_split, load_tokenizer

    ours = load_tokenizer(store, data)
    text = ours.decode(load_split(store, data, "test")[:4000])
    return AutoTokenizer.from_pretrained(out_dir)(text).input_ids == ours.encode(text).tolist()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ref", default=None, help="export this committed model of --store instead of training")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tokenizer", default="byte", help="byte or bpe (for the model trained here)")
    p.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary (with --tokenizer bpe)")
    p.add_argument("--rows", type=int, default=8, help="windows in the fixed batch")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    started = time.time()
    uri, ref = (args.store, args.ref) if args.ref else train(args)
    train_s = time.time() - started

    from asymptote.export_hf import export_model, find_source, load_decoder, load_hf
    from asymptote.store import Store

    store = Store(uri)
    t0 = time.time()
    res = export_model(store, ref, tempfile.mkdtemp(prefix="asymptote-hf-") + "/model")
    export_s = time.time() - t0
    log.info("exported %s to %s (%.1f s): %s", ref, res.out_dir, export_s, res.files)
    t0 = time.time()
    hf = load_hf(res.out_dir)
    load_s = time.time() - t0
    ours = load_decoder(store, find_source(store, ref))
    if res.data is None:
        raise SystemExit(f"{ref}: its data artifact is not in the store; nothing to compare on")
    batch = fixed_batch(store, res.data, ours.cfg.block_size, args.rows)
    figures = compare_logits(ours, hf, batch) | compare_generation(ours, hf, batch)
    emit(
        {
            **figures,
            "tokenizer_equal": compare_tokenizers(store, res.data, res.out_dir),
            "goal_logit_diff": 1e-4,
            "meets_goal": figures["max_abs_logit_diff"] <= 1e-4 and figures["generate_equal"],
            "ref": res.ref,
            "kind": res.kind,
            "tokenizer": res.tokenizer,
            "params": res.params,
            "test_loss": res.metrics.get("test_loss"),
            "test_bpb": res.metrics.get("test_bpb"),
            "batch": list(batch.shape),
            "train_s": train_s,
            "export_s": export_s,
            "hf_load_s": load_s,
            "wall_s": time.time() - started,
        },
        args.save,
        args.data,
    )


if __name__ == "__main__":
    main()
