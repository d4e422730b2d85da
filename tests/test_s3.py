"""The store on a real S3-compatible server (moto, on loopback): artifacts, multipart, the flow, secrets."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from conftest import TEST_SECRET
from helpers import tiny_pretrain_config

from asymptote.store import MULTIPART_CHUNK, IntegrityError, Store


def _bucket(cfg) -> tuple[str, str]:
    bucket, _, prefix = cfg.uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def _objects(cfg) -> dict[str, bytes]:
    bucket, prefix = _bucket(cfg)
    s3 = boto3.client("s3", endpoint_url=cfg.endpoint_url)
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    return {k.removeprefix(prefix + "/"): s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_artifact_round_trip_and_corruption(s3_store_cfg):
    store = Store(s3_store_cfg)
    with store.writer("runs/x", kind="run") as d:
        (d / "a.bin").write_bytes(b"abc")
    assert store.read("runs/x", "a.bin") == b"abc"
    assert (store.localize("runs/x") / "a.bin").read_bytes() == b"abc"
    bucket, prefix = _bucket(s3_store_cfg)
    boto3.client("s3", endpoint_url=s3_store_cfg.endpoint_url).put_object(
        Bucket=bucket, Key=f"{prefix}/runs/x/a.bin", Body=b"evil"
    )
    with pytest.raises(IntegrityError):
        Store(s3_store_cfg).read("runs/x", "a.bin")


def test_large_files_go_up_as_multipart(s3_store_cfg, tmp_path):
    store = Store(s3_store_cfg)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\1" * (2 * MULTIPART_CHUNK + 1024))
    store.put_file(big, "blobs/big.bin")
    bucket, prefix = _bucket(s3_store_cfg)
    head = boto3.client("s3", endpoint_url=s3_store_cfg.endpoint_url).head_object(
        Bucket=bucket, Key=f"{prefix}/blobs/big.bin"
    )
    assert head["ContentLength"] == big.stat().st_size
    assert "-" in head["ETag"]  # an ETag of the form <md5>-<parts> is only given to multipart uploads


def test_pretrain_flow_on_s3(ray_local, prefect_api, s3_store_cfg):
    from asymptote.flows.pretraining import pretrain

    cfg = tiny_pretrain_config("unused").model_copy(update={"store": s3_store_cfg})
    res = pretrain(cfg)
    assert res.run.uri.startswith("s3://") and res.report_uri.startswith("s3://")
    objects = _objects(s3_store_cfg)
    run = res.run.rel
    manifest = json.loads(objects[f"{run}/MANIFEST.json"])
    for name, entry in manifest["files"].items():  # every committed file is there, with its checksum
        assert hashlib.sha256(objects[f"{run}/{name}"]).hexdigest() == entry["sha256"]
    assert any(k.startswith(f"{res.data.rel}/train_") for k in objects)
    assert any(k.startswith("prefect/results/") for k in objects)  # Prefect results persist in S3 ...
    assert any(k.startswith("prefect/keys/") for k in objects)  # ... and so do the cache keys
    for key, body in objects.items():
        assert TEST_SECRET.encode() not in body, f"secret leaked into {key}"

    again = pretrain(cfg)
    assert again.step_states == {"prepare-data": "Cached", "train": "Cached", "evaluate": "Cached"}
    assert again.run == res.run
