"""bench/protocols: every protocol file parses, its hash is of its bytes, and the scaling benches'
studies build into valid flow configs on any corpus and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import bench_modules

BENCH = Path(__file__).resolve().parents[1] / "bench"
PROTOCOLS = sorted((BENCH / "protocols").glob("*.json"))


@pytest.fixture(scope="module")
def common():
    yield from bench_modules("common")


def test_the_headline_benches_have_protocols():
    assert {p.stem for p in PROTOCOLS} >= {"autolrs", "planner", "recipe_tiny"}


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_protocol_parses_and_hashes_its_bytes(common, path, tmp_path):
    proto = common.load_protocol(str(path))
    assert proto == json.loads(path.read_text()) and len(proto.sha) == 16
    edited = tmp_path / path.name
    edited.write_text(path.read_text() + "\n")  # any edit, even whitespace, is another protocol
    assert common.load_protocol(str(edited)).sha != proto.sha


@pytest.mark.parametrize("name", ["planner", "recipe_tiny"])
def test_scaling_protocols_build_their_study(common, name):
    from asymptote.flows.scaling import ScalingStudyConfig

    proto = common.load_protocol(str(BENCH / "protocols" / f"{name}.json"))
    cfg = common.study_config(ScalingStudyConfig, proto["study"], "corpus.txt", "/tmp/store", ["seeds=4"])
    assert cfg.data.source == "corpus.txt" and cfg.store.uri == "/tmp/store" and cfg.seeds == 4
    with pytest.raises(Exception, match="seeds"):
        common.study_config(ScalingStudyConfig, proto["study"], "corpus.txt", "/tmp/store", ["seeds=0"])
