"""Secrets never leave the process: the one place that blanks them out of what is logged or stored.

A credential a user writes into a URL (`redis://:secret@host:6379`, `https://user:token@host`) or
into a field whose name says it is one (`password`, `secret`, `token`, `aws_secret_access_key`) is
replaced by `***` wherever a config or result leaves the process: tracking params, Prefect's stored
flow parameters and artifacts, logs, reports and the store's manifests.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://[user][:password]@host: the password part, or a lone user part (a token used as user name)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*)(?::(?P<pw>[^@/\s]*))?@"
)
# whole words of a field name only, and `token`/`key` words only as its last word: `aws_secret_access_key`
# and `github_token` are secrets, `max_train_tokens`, `token_dtype` and `tokenizer` are not
_SECRET_NAMES = re.compile(
    r"(?:^|[_\-.])(?:(?:password|passwd|secret|credentials?)(?:$|[_\-.])|(?:token|api_key|access_key)$)",
    re.I,
)


def redact_text(text: str) -> str:
    """`text` with every URL's password (or, when it has none, its user part) replaced by ***."""

    def blank(m: re.Match) -> str:
        if m.group("pw") is not None:
            return f"{m.group('scheme')}{m.group('user')}:{MASK}@"
        return f"{m.group('scheme')}{MASK}@" if m.group("user") else m.group(0)

    return _URL_CREDENTIALS.sub(blank, text)


def redact(value: Any, name: str = "") -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with its secrets blanked: URL
    credentials anywhere, and the whole value of any field named like a secret."""
    if name and _SECRET_NAMES.search(name) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
