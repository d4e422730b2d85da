"""Export a committed model of the store (a run, a soup, a distilled student) as a Hugging Face Llama.

asymptote's Decoder is a Llama: pre-norm RMSNorm blocks, bias-free projections, grouped-query
attention, SwiGLU (silu(gate) * up -> down) and RoPE on half-split pairs, which is exactly Llama's
`rotate_half` convention, so q and k need no permutation: only the parameter names change. The
embeddings are tied (Llama's `tie_word_embeddings`), so the directory holds no `lm_head.weight`.

The directory holds config.json, model.safetensors, generation_config.json, the tokenizer (when the
model's data artifact names one) and a README.md model card; `AutoModelForCausalLM.from_pretrained`
loads it with no custom code. Nothing here imports `transformers`: the conversion is name and JSON
bookkeeping; transformers is needed only to load the result (`load_hf`, the `export` extra).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors.torch import save_file

from asymptote.checkpoint import WEIGHTS, load_weights
from asymptote.config import ConfigError, ModelConfig
from asymptote.evaluation import evaluate_split
from asymptote.model import Decoder, count_params
from asymptote.shards import load_meta, load_split, load_tokenizer
from asymptote.store import Store, layout
from asymptote.tokenizer import EOS, ByteTokenizer

# Per-block parameter names: asymptote's -> Llama's (under model.layers.<i>.).
BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.w1.weight": "mlp.gate_proj.weight",
    "mlp.w3.weight": "mlp.up_proj.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
}
TOP_NAMES = {"tok_emb.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ExportError(ConfigError):
    """The reference or the output folder cannot be exported to; the message says what to give instead."""


class ExportResult(BaseModel):
    """What `export_model` wrote, and the figures its model card reports."""

    ref: str
    """Store-relative path of the exported model (runs/<key>, soups/<key>/<name>, ...)."""
    kind: str
    out_dir: str
    params: int
    tokenizer: str | None
    """byte, bpe, or None when the model's data artifact was not found (no tokenizer written)."""
    data: str | None
    metrics: dict[str, float]
    """Test loss (nats/token), bits per token and bits per byte of the exported weights."""
    files: list[str]


# ----------------------------------------------------------------------------- weights and config


def llama_name(name: str) -> str:
    """Llama's name for one asymptote parameter; refuses a name it does not know."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[2] in BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{BLOCK_NAMES[parts[2]]}"
    raise ExportError(f"parameter {name!r} has no Llama counterpart; is this an asymptote Decoder?")


def llama_state_dict(tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32):
    """asymptote weights -> Llama weights (renamed, cast, contiguous). RoPE needs no permutation:
    both sides rotate (x[:d/2], x[d/2:]) pairs."""
    return {llama_name(k): v.detach().to(dtype).contiguous() for k, v in tensors.items()}


def llama_config(cfg: ModelConfig, eos_id: int | None, dtype: str = "float32") -> dict[str, Any]:
    """config.json of the equivalent LlamaForCausalLM (transformers 5 layout, plus `rope_theta` for 4.x)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,  # inference: asymptote's dropout (0 in its recipes) has no role here
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "use_cache": True,
        "dtype": dtype,
    }


def generation_config(eos_id: int | None) -> dict[str, Any]:
    """Sampling at temperature 1 as asymptote's own sampler; generation stops only at a real EOS token."""
    return {
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "do_sample": True,
        "top_k": 0,
    }


# ----------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which the `ByteLevel` pre-tokenizer applies."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in keep else next(extra)) for b in range(256)}


def byte_tokenizer_json() -> str:
    """The byte tokenizer (id = UTF-8 byte) as a `tokenizers` byte-level BPE without merges: every
    byte's character is in the vocabulary with the byte as its id, so ids match asymptote's exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok.to_str()


def tokenizer_files(tok, block_size: int) -> dict[str, str]:
    """tokenizer.json and tokenizer_config.json for AutoTokenizer (PreTrainedTokenizerFast)."""
    text = byte_tokenizer_json() if isinstance(tok, ByteTokenizer) else tok.to_json()
    eos = None if isinstance(tok, ByteTokenizer) or tok.eos_id is None else EOS
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        "bos_token": None,
        "eos_token": eos,
        "clean_up_tokenization_spaces": False,
    }
    return {"tokenizer.json": text, "tokenizer_config.json": json.dumps(config, indent=1)}


def eos_token_id(tok) -> int | None:
    """The end-of-text id, or None for bytes: their separator is a newline, which is text, not an end."""
    return None if tok is None or isinstance(tok, ByteTokenizer) else tok.eos_id


# ----------------------------------------------------------------------------- what is exported


class Source(BaseModel):
    """A committed model of the store, with the data artifact it was trained on (when known)."""

    rel: str
    kind: str
    meta: dict[str, Any]
    data: str | None

    @property
    def model(self) -> ModelConfig:
        return ModelConfig.model_validate(self.meta["model"])


def find_source(store: Store, ref: str) -> Source:
    """The committed model `ref` names (path or URI), refusing anything that is not one."""
    try:
        rel = store.model_ref(ref, "ref")
    except ValueError as err:
        raise ExportError(str(err)) from None
    manifest = store.manifest(rel)
    return Source(rel=rel, kind=manifest.kind, meta=manifest.meta, data=data_of(store, manifest.meta))


def data_of(store: Store, meta: dict[str, Any]) -> str | None:
    """The data artifact a model learnt from: a run's config, a soup's `data`, a checkpoint's run."""
    rel = (meta.get("config") or {}).get("data_artifact") or meta.get("data")
    if rel is None and meta.get("run") and store.has(layout("run", key=meta["run"])):
        rel = (store.manifest(layout("run", key=meta["run"])).meta.get("config") or {}).get("data_artifact")
    return rel if isinstance(rel, str) and store.has(rel) else None


def load_decoder(store: Store, source: Source) -> Decoder:
    """The exported weights as asymptote's own Decoder (fp32, eval): the reference HF must match."""
    model = Decoder(source.model)
    model.load_state_dict(load_weights(store.localize(source.rel) / WEIGHTS))
    return model.eval()


def evaluate(
    store: Store, source: Source, model: Decoder, max_windows: int | None = None, splits=("test",)
) -> dict[str, float]:
    """Test loss, bits per token and bits per byte on the model's own data (fp32); the run's recorded
    validation loss goes into the card as it was measured."""

    if source.data is None:
        return {}
    meta, out = load_meta(store, source.data), {}
    for split in splits:
        tokens = load_split(store, source.data, split)
        if len(tokens) > model.cfg.block_size:
            out |= evaluate_split(model, tokens, meta, split, model.cfg.block_size, max_windows=max_windows)
    return out


# ----------------------------------------------------------------------------- the model card


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("field", "value")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def _model_section(cfg: ModelConfig, params: int) -> str:
    rows = [
        ("parameters", f"{params:,} (embeddings tied with the output head)"),
        ("layers x width", f"{cfg.n_layer} x {cfg.d_model}"),
        ("attention heads / key-value heads", f"{cfg.n_head} / {cfg.n_kv_head} (head dim {cfg.head_dim})"),
        ("SwiGLU hidden width", cfg.d_ff),
        ("context (max_position_embeddings)", cfg.block_size),
        ("vocabulary", cfg.vocab_size),
        ("RoPE theta", cfg.rope_theta),
        ("RMSNorm eps", cfg.norm_eps),
        ("preset", cfg.preset or "custom"),
    ]
    return "## Model\n\n" + _table(rows)


def _data_section(data: str | None, meta: dict[str, Any] | None) -> str:
    if data is None or meta is None:
        return "## Data\n\nThe data artifact this model learnt from is not in the store: no tokenizer was written."
    bpt = meta.get("bytes_per_token") or {}
    rows = [
        ("artifact", f"`{data}`"),
        ("source", f"`{meta.get('source')}`"),
        ("source sha256", f"`{meta.get('source_sha256')}`"),
        ("tokenizer", f"{meta.get('tokenizer')} ({meta.get('vocab_size')} ids)"),
        *[(f"{s} tokens", f"{meta.get(f'n_{s}', 0):,}") for s in ("train", "val", "test")],
        *[(f"{s} bytes per token", f"{v:.4f}") for s, v in bpt.items() if v],
    ]
    return "## Data\n\n" + _table(rows)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _recipe_section(source: Source) -> str:
    meta, config = source.meta, source.meta.get("config") or {}
    rows: list[tuple[str, Any]] = [("artifact", f"`{source.rel}` ({source.kind})")]
    rows += [
        (k, f"`{_plain(config[k])}`") for k in ("name", "objective", "batches", "init_from") if k in config
    ]
    rows += [(f"train.{k}", v) for k, v in (config.get("train") or {}).items()]
    rows += [(k, meta[k]) for k in ("method", "code_version") if k in meta]
    rows += [(f"ingredient `{r}`", f"weight {w:.4g}") for r, w in (meta.get("weights") or {}).items()]
    summary = meta.get("summary") or {}
    rows += [
        (f"recorded {k}", summary[k]) for k in ("steps", "tokens", "val_loss", "train_loss") if k in summary
    ]
    return "## Recipe\n\n" + _table(rows)


def _eval_section(metrics: dict[str, float]) -> str:
    if not metrics:
        return "## Evaluation\n\nNot evaluated (no data artifact, or `evaluate=False`)."
    rows = [
        (s, f"{metrics[f'{s}_loss']:.4f} | {metrics[f'{s}_bits_per_token']:.4f} | {metrics[f'{s}_bpb']:.4f}")
        for s in ("test", "val")
        if f"{s}_loss" in metrics
    ]
    head = "| split | loss (nats/token) | bits/token | bits/byte |\n|---|---|---|---|\n"
    body = "\n".join(f"| {s} | {v} |" for s, v in rows)
    return (
        "## Evaluation\n\nComputed at export from the exported weights (fp32, non-overlapping windows of "
        f"the full context) on the data artifact's test split.\n\n{head}{body}"
    )


def model_card(source: Source, store_uri: str, params: int, metrics, data_meta, tokenizer: str | None) -> str:
    """README.md: what the model is, what it learnt from, how it was made, and its losses on test."""
    name = (source.meta.get("config") or {}).get("name") or source.rel.replace("/", "-")
    usage = (
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("PATH")\n'
        + ('tokenizer = AutoTokenizer.from_pretrained("PATH")\n' if tokenizer else "")
        + "```"
    )
    notes = (
        "## Notes\n\n- Exported by asymptote as a plain Llama (no custom code). Positions beyond the "
        "context above were never trained.\n"
        + (
            "- Byte tokenizer: ids are UTF-8 bytes; documents were separated by a newline, so there is "
            "no end-of-text token and generation stops only at `max_new_tokens`.\n"
            if tokenizer == "byte"
            else ""
        )
    )
    front = "---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags: [llama, asymptote]\n---\n"
    intro = f"# {name}\n\nExported from `{store_uri}/{source.rel}`, a {source.kind} artifact of an asymptote store."
    sections = [
        _model_section(source.model, params),
        _data_section(source.data, data_meta),
        _recipe_section(source),
        _eval_section(metrics),
        "## Use\n\n" + usage,
        notes,
    ]
    return front + intro + "\n\n" + "\n\n".join(sections) + "\n"


# ----------------------------------------------------------------------------- the export


def export_model(
    store: Store | str,
    ref: str,
    out_dir: str | Path,
    dtype: str = "float32",
    evaluate_splits: bool = True,
    max_windows: int | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the committed model `ref` of `store` as a Hugging Face Llama directory at out_dir.

    The folder is built beside out_dir and moved into place whole, so a failed export leaves nothing
    half-written; an existing non-empty out_dir is refused unless overwrite.
    """
    store = store if isinstance(store, Store) else Store(store)
    out = Path(out_dir).expanduser().resolve()
    _check_target(out, dtype, overwrite)
    source = find_source(store, ref)
    model = load_decoder(store, source)
    tok, data_meta = _tokenizer_and_meta(store, source)
    metrics = evaluate(store, source, model, max_windows) if evaluate_splits else {}
    files = _files(store, source, model, tok, data_meta, metrics, dtype)
    _write_folder(out, files, llama_state_dict(model.state_dict(), DTYPES[dtype]), overwrite)
    return ExportResult(
        ref=source.rel,
        kind=source.kind,
        out_dir=str(out),
        params=count_params(model),
        tokenizer=None if tok is None else tok.name,
        data=source.data,
        metrics=metrics,
        files=sorted([*files, WEIGHTS]),
    )


def _check_target(out: Path, dtype: str, overwrite: bool) -> None:
    if dtype not in DTYPES:
        raise ExportError(f"dtype={dtype!r}: allowed: {', '.join(DTYPES)}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ExportError(
            f"{out} exists and is not an empty folder; choose another or pass overwrite=True (--overwrite)"
        )


def _tokenizer_and_meta(store: Store, source: Source):

    if source.data is None:
        return None, None
    return load_tokenizer(store, source.data), load_meta(store, source.data)


def _files(store, source, model, tok, data_meta, metrics, dtype) -> dict[str, str]:
    """Every file of the directory but the weights, as text."""
    eos = eos_token_id(tok)
    files = {
        "config.json": json.dumps(llama_config(model.cfg, eos, dtype), indent=1),
        "generation_config.json": json.dumps(generation_config(eos), indent=1),
        "README.md": model_card(
            source, store.uri(), count_params(model), metrics, data_meta, None if tok is None else tok.name
        ),
    }
    return files | (tokenizer_files(tok, model.cfg.block_size) if tok is not None else {})


def _write_folder(
    out: Path, files: dict[str, str], tensors: dict[str, torch.Tensor], overwrite: bool
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        if out.exists() and overwrite:
            shutil.rmtree(out)
        elif out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_hf(out_dir: str | Path):
    """The exported directory loaded by transformers (fp32, eval), with no custom code: the check
    that the export is what it claims. Needs the `export` extra."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32)
    return model.eval()
