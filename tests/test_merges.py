"""Merges relative to a base: each rule on hand-checkable tensors, then whole checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from asymptote import merges
from asymptote.config import Section
from asymptote.merges import MERGES, dare, merge, slerp, task_arithmetic, ties
from asymptote.soups import Checkpoint, uniform_soup


def save(tmp_path, name, tensors) -> Checkpoint:
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path))
    return Checkpoint(name, path)


def test_registry_is_explicit():
    """Each registered merge is a function of asymptote.merges under its own name, with a typed options
    model whose defaults are valid; unknown options are refused."""
    assert MERGES and all(isinstance(name, str) for name in MERGES)
    for name, entry in MERGES.items():
        assert entry.fn is getattr(merges, name), name
        assert issubclass(entry.options, Section) and isinstance(entry.validate({}), dict), name
    with pytest.raises(ValueError, match="extra"):
        MERGES["ties"].validate({"densty": 0.3})


def test_task_arithmetic_is_the_mean_task_vector():
    deltas = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])]
    torch.testing.assert_close(task_arithmetic(deltas), torch.tensor([2.0, 0.0]))


def test_ties_trims_elects_sign_and_averages_agreeing_values():
    deltas = [
        torch.tensor([4.0, -3.0, 0.1, 2.0]),
        torch.tensor([2.0, 1.0, -5.0, -0.2]),
        torch.tensor([-1.0, -2.0, 0.3, 1.0]),
    ]
    out = ties(deltas, density=0.5)
    # density 0.5 keeps each member's two largest magnitudes (ties at the threshold stay):
    # [4,-3,0,0], [2,0,-5,0], [-1,-2,0,1]; column sums 5,-5,-5,1 elect signs +,-,-,+
    # agreeing: col0 {4,2} -> 3; col1 {-3,-2} -> -2.5; col2 {-5} -> -5; col3 {1} -> 1
    torch.testing.assert_close(out, torch.tensor([3.0, -2.5, -5.0, 1.0]))
    with pytest.raises(ValueError, match="density"):
        ties(deltas, density=0.0)


def test_dare_without_drop_is_task_arithmetic_and_with_drop_keeps_the_mean():
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(200_000, generator=gen) + 1.0 for _ in range(2)]
    torch.testing.assert_close(dare(deltas, drop=0.0), task_arithmetic(deltas))
    out = dare(deltas, drop=0.7, seed=3)
    assert torch.equal(out, dare(deltas, drop=0.7, seed=3))  # seeded
    assert not torch.equal(out, dare(deltas, drop=0.7, seed=4))
    assert float(out.mean()) == pytest.approx(float(task_arithmetic(deltas).mean()), rel=0.05)
    zeros = float((out == 0).float().mean())
    assert zeros == pytest.approx(0.7 * 0.7, abs=0.01)  # an entry is zero when both members dropped it
    with pytest.raises(ValueError, match="drop"):
        dare(deltas, drop=1.0)


def test_slerp_ends_and_midpoint_on_the_sphere():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp([a, b], t=0.0), a)
    torch.testing.assert_close(slerp([a, b], t=1.0), b)
    mid = slerp([a, b], t=0.5)
    torch.testing.assert_close(mid, torch.tensor([2**-0.5, 2**-0.5]))  # lerp would give norm 0.707
    torch.testing.assert_close(slerp([a, 2 * a], t=0.5), 1.5 * a)  # parallel: linear
    with pytest.raises(ValueError, match="exactly 2"):
        slerp([a, b, a])


def test_merge_over_checkpoints(tmp_path):
    gen = torch.Generator().manual_seed(0)
    base_t = {"w": torch.randn(8, 4, generator=gen), "g": torch.ones(4)}
    members_t = [
        {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in base_t.items()} for _ in range(3)
    ]
    base = save(tmp_path, "base", base_t)
    members = [save(tmp_path, f"m{i}", t) for i, t in enumerate(members_t)]
    soup = uniform_soup(members)
    ta = merge(base, members, "task_arithmetic")
    for k in base_t:
        torch.testing.assert_close(ta[k], soup[k])
    zero = merge(base, members, "ties", scale=0.0, density=0.3)
    assert all(torch.equal(zero[k], base_t[k]) for k in base_t)
    double = merge(base, members, "task_arithmetic", scale=2.0)
    torch.testing.assert_close(double["w"], base_t["w"] + 2 * (soup["w"] - base_t["w"]))
    sl = merge(base, members[:2], "slerp", t=0.5)
    assert sl["w"].shape == (8, 4)
    with pytest.raises(ValueError, match="allowed: " + ", ".join(MERGES)):
        merge(base, members, "mean")
    with pytest.raises(ValueError, match="exactly 2"):
        merge(base, members, "slerp")


def test_config_types_each_merge_options_from_the_registry():
    from pydantic import ValidationError

    from asymptote.soups_config import MergeOptions

    given = MergeOptions(options={"ties": {"density": 0.5}})
    assert given.for_method("ties") == {"density": 0.5}
    assert given.for_method("dare") == MERGES["dare"].validate({})  # unnamed: the registry's defaults
    with pytest.raises(ValidationError, match="density"):
        MergeOptions(options={"ties": {"density": 2.0}})
    with pytest.raises(ValidationError, match="allowed: " + ", ".join(MERGES)):
        MergeOptions(options={"no_such_merge": {}})
