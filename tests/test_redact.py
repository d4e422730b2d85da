"""Secrets are blanked out of anything that leaves the process."""

from __future__ import annotations

from asymptote.redact import MASK, redact, redact_text


def test_url_passwords_are_blanked_and_the_rest_kept():
    assert redact_text("redis://:hunter2@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"
    assert redact_text("https://ann:tok3n@git.example/r.git") == f"https://ann:{MASK}@git.example/r.git"
    assert redact_text("https://tok3n@git.example/r.git") == f"https://{MASK}@git.example/r.git"
    assert redact_text("s3://bucket/prefix and ./artifacts") == "s3://bucket/prefix and ./artifacts"


def test_nested_configs_lose_every_secret():
    config = {
        "store": {"uri": "s3://b/p", "redis_url": "redis://:hunter2@h:6379", "aws_secret_access_key": "AKIA"},
        "notes": ["see redis://u:pw@h", 3, None],
        "token": "",
    }
    out = redact(config)
    assert "hunter2" not in str(out) and "AKIA" not in str(out) and ":pw@" not in str(out)
    assert out["store"]["uri"] == "s3://b/p" and out["notes"][1:] == [3, None] and out["token"] == ""
