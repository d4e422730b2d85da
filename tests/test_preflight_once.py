"""One preflight per call: inside `one_check_per_call` (the CLI's command, the main job's body), a
config is checked once however many flows and subflows check it again."""

from __future__ import annotations

from asymptote import preflight
from asymptote.config import PretrainConfig, StoreConfig
from asymptote.flows.registry import MainConfig


def _count_store_checks(monkeypatch) -> list[StoreConfig]:
    seen: list[StoreConfig] = []
    real = preflight.check_store
    monkeypatch.setattr(preflight, "check_store", lambda cfg: seen.append(cfg) or real(cfg))
    return seen


def test_a_config_is_checked_once_per_call(monkeypatch, tmp_path):
    seen = _count_store_checks(monkeypatch)
    config = PretrainConfig(store=StoreConfig(uri=str(tmp_path / "store")))
    with preflight.one_check_per_call():
        preflight.check(config)  # the CLI
        preflight.check(config)  # the flow it calls
        with preflight.one_check_per_call():  # a composite flow inside the same call
            preflight.check(config)
    assert len(seen) == 1
    preflight.check(config)  # a later call checks again
    assert len(seen) == 2


def test_the_main_job_check_covers_its_steps(monkeypatch, tmp_path):
    seen = _count_store_checks(monkeypatch)
    config = MainConfig.model_validate({"steps": ["pretrain"], "store": {"uri": str(tmp_path / "s")}})
    with preflight.one_check_per_call():
        preflight.check(config)  # the main job and, inside it, its one step
        checks = len(seen)
        preflight.check(config.step_config("pretrain"))  # the step's subflow
    assert len(seen) == checks == 2  # the job's own store and the step's, each once


def test_a_changed_config_is_checked_again(monkeypatch, tmp_path):
    seen = _count_store_checks(monkeypatch)
    with preflight.one_check_per_call():
        preflight.check(PretrainConfig(store=StoreConfig(uri=str(tmp_path / "a"))))
        preflight.check(PretrainConfig(store=StoreConfig(uri=str(tmp_path / "b"))))
    assert [cfg.uri for cfg in seen] == [str(tmp_path / "a"), str(tmp_path / "b")]
