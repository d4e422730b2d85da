"""One preflight per call: inside `one_check_per_call` (the CLI's command, a composite flow's body),
each store, corpus and model reference is checked once, however many configs and subflows name it."""

from __future__ import annotations

from asymptote import preflight
from asymptote.config import DataConfig, PretrainConfig, StoreConfig
from asymptote.flows.registry import MainConfig


def _count(monkeypatch, name: str) -> list:
    seen: list = []
    real = getattr(preflight, name)
    monkeypatch.setattr(preflight, name, lambda *a: seen.append(a[0]) or real(*a))
    return seen


def test_a_config_is_checked_once_per_call(monkeypatch, tmp_path):
    stores, corpora = _count(monkeypatch, "check_store"), _count(monkeypatch, "check_corpus")
    config = PretrainConfig(store=StoreConfig(uri=str(tmp_path / "store")))
    with preflight.one_check_per_call():
        preflight.check(config)  # the CLI
        preflight.check(config)  # the flow it calls
        with preflight.one_check_per_call():  # a composite flow inside the same call
            preflight.check(config)
    assert (len(stores), len(corpora)) == (1, 1)
    preflight.check(config)  # a later call checks again
    assert (len(stores), len(corpora)) == (2, 2)


def test_the_main_job_and_its_steps_share_their_inputs_checks(monkeypatch, tmp_path):
    stores, corpora = _count(monkeypatch, "check_store"), _count(monkeypatch, "check_corpus")
    config = MainConfig.model_validate({"steps": ["pretrain"], "store": {"uri": str(tmp_path / "s")}})
    with preflight.one_check_per_call():
        preflight.check(config)  # the main job, and inside it its step's config
        after_main = (len(stores), len(corpora))
        preflight.check(config.step_config("pretrain"))  # the step's subflow: nothing new to check
    assert after_main[0] == 1 and (len(stores), len(corpora)) == after_main


def test_what_a_call_has_not_checked_is_checked(monkeypatch, tmp_path):
    stores, corpora = _count(monkeypatch, "check_store"), _count(monkeypatch, "check_corpus")
    other_corpus = DataConfig(source=str(tmp_path / "other.txt"))
    (tmp_path / "other.txt").write_text("some text of its own\n" * 2000)
    with preflight.one_check_per_call():
        preflight.check(PretrainConfig(store=StoreConfig(uri=str(tmp_path / "a"))))
        preflight.check(PretrainConfig(store=StoreConfig(uri=str(tmp_path / "b"))))
        preflight.check(PretrainConfig(store=StoreConfig(uri=str(tmp_path / "b")), data=other_corpus))
    assert [cfg.uri for cfg in stores] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert [c.data.source for c in corpora][-1] == str(tmp_path / "other.txt") and len(corpora) == 3
