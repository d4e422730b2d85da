"""Bad input through the real CLI: every kind fails before anything trains, in one clear line.

Each case runs `python -m asymptote.cli ...` in a subprocess (see bench/bad_inputs.py for the table):
a non-zero exit within seconds, no traceback, a message naming the field, file or URI, and no store
created. The Python API's pre-flight check (what every flow calls first) is asserted in-process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bad_inputs  # noqa: E402

CASES = bad_inputs.cases(Path("/tmp"))  # for the ids only; each test writes its own files


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_bad_input_fails_fast_and_clearly(name, tmp_path):
    case = next(c for c in bad_inputs.cases(tmp_path) if c.name == name)
    out = bad_inputs.run_case(case, tmp_path)
    assert out.rc != 0, out.stderr
    assert "Traceback" not in out.stderr
    assert case.expect in out.stderr, out.stderr
    assert len([line for line in out.stderr.splitlines() if line.strip()]) <= 3, out.stderr
    assert out.seconds < case.max_s
    assert not out.store_touched


def test_there_are_at_least_25_kinds():
    assert len(CASES) >= 25


def test_python_api_preflight_names_the_file(tmp_path):
    from asymptote.config import PretrainConfig
    from asymptote.preflight import PreflightError, check

    cfg = PretrainConfig.model_validate(
        {"data": {"source": "/bin/ls"}, "store": {"uri": str(tmp_path / "s")}}
    )
    with pytest.raises(PreflightError, match="/bin/ls is binary"):
        check(cfg)
    assert not (tmp_path / "s").exists()


def test_python_api_preflight_accepts_good_input(tmp_path, corpus_path):
    from asymptote.config import PretrainConfig
    from asymptote.preflight import check

    check(
        PretrainConfig.model_validate(
            {"data": {"source": corpus_path}, "store": {"uri": str(tmp_path / "s")}}
        )
    )
    assert not (tmp_path / "s").exists()


def test_deterministic_errors_are_not_retried():
    from asymptote.store import IntegrityError
    from asymptote.tasks.caching import deterministic

    assert deterministic(FileNotFoundError("x")) and deterministic(IntegrityError("x"))
    assert deterministic(OSError(28, "No space left on device"))
    assert not deterministic(ConnectionError("reset")) and not deterministic(TimeoutError())
