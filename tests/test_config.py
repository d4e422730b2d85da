"""Config validation errors name the field, the value and what is allowed; cache keys are honest."""

from __future__ import annotations

import pytest

from asymptote.config import ConfigError, PretrainConfig, build, key_dict, stable_hash
from asymptote.recipes import load_recipe, recipe_names, resolve


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        build(PretrainConfig, data)
    return str(info.value)


def test_bad_number_names_field_value_and_bound():
    msg = _error({"train": {"lr": -1}})
    assert "train.lr = -1" in msg and "greater than 0" in msg


def test_unknown_field_suggests_the_close_name():
    msg = _error({"train": {"weight_decey": 0.1}})
    assert "train.weight_decey" in msg and "did you mean 'weight_decay'" in msg


def test_unknown_schedule_and_preset_list_the_allowed():
    assert "allowed: constant, cosine, linear, replay" in _error({"train": {"schedule": "step"}})
    assert "allowed: cpu-0.1m" in _error({"model": {"preset": "huge"}})


def test_shape_constraints():
    assert "divisible by n_head" in _error({"model": {"d_model": 30, "n_head": 4}})


def test_replay_requires_a_file():
    assert "schedule_file" in _error({"train": {"schedule": "replay"}})


def test_overrides_parse_values_as_yaml():
    cfg = resolve(
        PretrainConfig, None, ["train.lr=3e-3", "model.preset=cpu-0.1m", "data.max_train_tokens=null"]
    )
    assert cfg.train.lr == 3e-3 and cfg.model.d_model == 64 and cfg.data.max_train_tokens is None


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.field=value"):
        resolve(PretrainConfig, None, ["train.lr"])


def test_volatile_fields_do_not_change_the_key_but_results_do():
    base = PretrainConfig()
    key = stable_hash(key_dict(base))
    moved = base.model_copy(deep=True)
    moved.store.uri = "s3://elsewhere"
    moved.compute.num_workers = 4
    moved.train.log_every = 7
    assert stable_hash(key_dict(moved)) == key
    moved.train.lr = 2e-3
    assert stable_hash(key_dict(moved)) != key


def test_bundled_recipes_validate():
    from asymptote.flows.registry import MainConfig

    assert "main" in recipe_names()
    MainConfig.model_validate(load_recipe("main"))


def test_every_field_has_a_docstring():
    from asymptote.config import ComputeConfig, DataConfig, ModelConfig, StoreConfig, TrainConfig

    for cls in (ModelConfig, DataConfig, TrainConfig, ComputeConfig, StoreConfig, PretrainConfig):
        missing = [n for n, f in cls.model_fields.items() if not f.description]
        assert not missing, f"{cls.__name__} fields without docstrings: {missing}"
