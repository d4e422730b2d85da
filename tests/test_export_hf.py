"""Export to a Hugging Face Llama: names, round-trip logits and greedy text, tokenizers, refusals.

Each model here is a tiny random Decoder committed through the project's own checkpoint path
(store.writer + save_weights), exported, and loaded back by `transformers` with no custom code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from asymptote.checkpoint import WEIGHTS, save_weights
from asymptote.config import DataConfig, ModelConfig
from asymptote.export_hf import ExportError, export_model, llama_name, load_hf
from asymptote.model import Decoder
from asymptote.sampling import generate
from asymptote.shards import load_tokenizer, prepare_dataset
from asymptote.store import Store

# Off every default on purpose: GQA, a non-default RoPE theta and RMSNorm eps, random norm gains.
SHAPE = dict(
    n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=48, block_size=48, rope_theta=500.0, norm_eps=1e-6
)
TEXT = "To be, or not to be: that is the question. Ünïcödé ✓ — naïve café.\n" * 300


def commit_model(
    store: Store, rel: str, cfg: ModelConfig, meta: dict, kind: str = "run", seed: int = 0
) -> Decoder:
    torch.manual_seed(seed)
    model = Decoder(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))  # gains away from 1, so a misplaced norm would show
    with store.writer(rel, kind=kind, meta={"model": cfg.model_dump(), **meta}) as folder:
        save_weights(model, folder / WEIGHTS)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls on a shared 2-core machine: more threads only contend (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def byte_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "corpus.txt").write_text(TEXT)
    store = Store(str(root / "store"))
    data = prepare_dataset(DataConfig(source=str(root / "corpus.txt")), store)
    cfg = ModelConfig(**SHAPE)
    meta = {"config": {"name": "tiny-run", "data_artifact": data, "train": {"lr": 0.003}}}
    model = commit_model(store, "runs/tiny", cfg, meta)
    result = export_model(store, "runs/tiny", root / "hf")
    return store, model, result


def test_every_parameter_has_one_llama_name():
    names = [llama_name(n) for n in Decoder(ModelConfig(**SHAPE)).state_dict()]
    assert len(set(names)) == len(names)
    assert "model.layers.1.mlp.gate_proj.weight" in names and "lm_head.weight" not in names
    with pytest.raises(ExportError, match="no Llama counterpart"):
        llama_name("layers.0.attn.wq.bias")


def test_export_round_trips_logits_and_greedy_text(byte_export):
    _, model, result = byte_export
    hf = load_hf(result.out_dir)
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.tie_word_embeddings
    x = torch.randint(0, 256, (3, SHAPE["block_size"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff <= 1e-5
    prompt = x[:, :8]
    ours = generate(model, prompt, SHAPE["block_size"] + 1, temperature=0)
    theirs = hf.generate(prompt, max_new_tokens=SHAPE["block_size"] - 7, do_sample=False)
    assert torch.equal(ours, theirs)


def test_byte_tokenizer_ids_are_the_bytes(byte_export):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(byte_export[2].out_dir)
    text = "Hé\nllo ✓ \t\x00 ünïcode"
    assert tok(text).input_ids == list(text.encode())
    assert tok.decode(list(text.encode())) == text


def test_card_reports_test_loss_data_and_recipe(byte_export):
    store, _, result = byte_export
    card = (Path(result.out_dir) / "README.md").read_text()
    assert f"| test | {result.metrics['test_loss']:.4f} |" in card
    assert result.data in card and "tiny-run" in card and "train.lr | 0.003" in card
    config = json.loads((Path(result.out_dir) / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 500.0 and config["rms_norm_eps"] == 1e-6


def test_bpe_soup_exports_with_its_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    (tmp_path / "corpus.txt").write_text(TEXT)
    store = Store(str(tmp_path / "store"))
    data = prepare_dataset(
        DataConfig(source=str(tmp_path / "corpus.txt"), tokenizer="bpe", vocab_size=300), store
    )
    ours = load_tokenizer(store, data)
    cfg = ModelConfig(**SHAPE | {"vocab_size": ours.vocab_size})
    commit_model(store, "soups/k/uniform", cfg, {"data": data, "method": "uniform"}, kind="soup")
    result = export_model(store, "soups/k/uniform", tmp_path / "hf", evaluate_splits=False)
    tok = AutoTokenizer.from_pretrained(result.out_dir)
    text = "that is the question, naïve café"
    assert tok(text).input_ids == ours.encode(text).tolist()
    assert (
        tok.eos_token_id
        == ours.eos_id
        == json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"]
    )
    assert result.tokenizer == "bpe" and result.metrics == {}


def test_what_is_not_a_committed_model_is_refused(byte_export, tmp_path):
    store, _, result = byte_export
    with pytest.raises(ExportError, match="no committed model"):
        export_model(store, result.data, tmp_path / "a")  # a data artifact, not a model
    with pytest.raises(ExportError, match="no committed model"):
        export_model(store, "runs/missing", tmp_path / "b")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_model(store, "runs/tiny", result.out_dir)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_exports_and_refuses(byte_export, tmp_path):
    from asymptote.cli import app

    store = byte_export[0]
    runner = CliRunner()
    out = tmp_path / "cli"
    ok = runner.invoke(
        app, ["export", "runs/tiny", str(out), "--store", store.uri(), "--no-evaluate", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.strip().splitlines()[-1])["ref"] == "runs/tiny"
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    bad = runner.invoke(app, ["export", "runs/nope", str(tmp_path / "x"), "--store", store.uri()])
    assert bad.exit_code == 1 and "no committed model" in bad.output


def test_bfloat16_export_casts_weights_and_says_so(byte_export, tmp_path):
    from safetensors import safe_open

    store = byte_export[0]
    result = export_model(store, "runs/tiny", tmp_path / "bf16", dtype="bfloat16", evaluate_splits=False)
    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
        assert f.metadata() == {"format": "pt"}
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    with pytest.raises(ExportError, match="allowed: float32, bfloat16, float16"):
        export_model(store, "runs/tiny", tmp_path / "int8", dtype="int8")
    assert result.params == sum(p.numel() for p in byte_export[1].parameters())
