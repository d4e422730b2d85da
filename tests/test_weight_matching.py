"""Weight matching for the Decoder: permutations keep the function, matching undoes them exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from asymptote.config import ModelConfig
from asymptote.model import Decoder
from asymptote.soups import Checkpoint, uniform_soup
from asymptote.weight_matching import Permutation, align, aligned_average, match, objective, permute

MHA = ModelConfig(n_layer=2, n_head=4, d_model=32, d_ff=48, block_size=16)
GQA = ModelConfig(n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=48, block_size=16)


def model_state(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = Decoder(cfg)
    with torch.no_grad():  # norm gains away from 1 so that every tensor carries a signal
        for _name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model.state_dict()


def logits(cfg: ModelConfig, state, tokens) -> torch.Tensor:
    model = Decoder(cfg).eval()
    model.load_state_dict(state)
    with torch.no_grad():
        return model(tokens)


TOKENS = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cfg", [MHA, GQA], ids=["mha", "gqa"])
def test_permutations_keep_the_function(cfg):
    state = model_state(cfg, 0)
    perm = Permutation.random(cfg, torch.Generator().manual_seed(1))
    permuted = permute(state, perm, cfg)
    assert not torch.equal(permuted["layers.0.attn.wq.weight"], state["layers.0.attn.wq.weight"])
    torch.testing.assert_close(
        logits(cfg, permuted, TOKENS), logits(cfg, state, TOKENS), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("cfg", [MHA, GQA], ids=["mha", "gqa"])
def test_matching_recovers_a_randomly_permuted_copy_exactly(cfg):
    state = model_state(cfg, 0)
    shuffled = permute(state, Permutation.random(cfg, torch.Generator().manual_seed(2)), cfg)
    recovered = align(state, shuffled, cfg)
    for name in state:
        assert torch.equal(recovered[name], state[name]), name
    assert torch.equal(logits(cfg, recovered, TOKENS), logits(cfg, state, TOKENS))


def test_query_heads_stay_with_their_key_value_group():
    perm = Permutation.random(GQA, torch.Generator().manual_seed(3))
    group = GQA.n_head // GQA.n_kv_head
    for kv, q in zip(perm.kv, perm.q, strict=False):
        assert [int(h) // group for h in q] == [int(kv[s // group]) for s in range(GQA.n_head)]
    found = match(model_state(GQA, 0), model_state(GQA, 1), GQA)
    for kv, q in zip(found.kv, found.q, strict=False):
        assert [int(h) // group for h in q] == [int(kv[s // group]) for s in range(GQA.n_head)]


def test_matching_independent_models_raises_the_objective_and_keeps_function():
    a, b = model_state(MHA, 0), model_state(MHA, 1)
    aligned = align(a, b, MHA)
    assert objective(a, aligned) > objective(a, b)
    torch.testing.assert_close(logits(MHA, aligned, TOKENS), logits(MHA, b, TOKENS), rtol=1e-5, atol=1e-5)


def test_aligned_average_of_a_model_and_its_permuted_copy_is_the_model(tmp_path):
    state = model_state(MHA, 0)
    shuffled = permute(state, Permutation.random(MHA, torch.Generator().manual_seed(4)), MHA)
    paths = []
    for name, s in (("a", state), ("b", shuffled)):
        paths.append(Checkpoint(name, tmp_path / f"{name}.safetensors"))
        save_file({k: v.contiguous() for k, v in s.items()}, str(paths[-1].path))
    aligned = aligned_average(paths, MHA)
    assert all(torch.equal(aligned[k], state[k]) for k in state)
    naive = uniform_soup(paths)  # averaging unaligned units changes the function
    assert not torch.allclose(logits(MHA, naive, TOKENS), logits(MHA, state, TOKENS), atol=1e-3)


def test_unknown_tensors_are_refused():
    state = model_state(MHA, 0) | {"head.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match="head.bias"):
        permute(state, Permutation.identity(MHA), MHA)
