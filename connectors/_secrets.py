"""Process-wide redaction of the secrets this process was configured with.

A server, or a proxy in front of it, may echo a request back in an error body -- headers included
(an ``api-key`` or ``Authorization`` header) -- and client libraries put such bodies in their
exception texts and log lines. So every secret read by :func:`connectors.parse_uri` is registered
here, with every form in which it travels, and :func:`redact` replaces them all by ``***``:

* the whole secret, and the password part of ``user:password``;
* base64 of the secret and of ``user:password`` (HTTP basic auth; pymilvus sends its token, or
  ``user:password``, base64-encoded in an ``authorization`` header), padded or not, standard and
  URL-safe alphabets;
* the secret as it appears inside JSON strings, Python reprs and URL-encoded text.

Connector and sync-engine errors redact their messages when they are created, the CLI redacts
everything it prints, and run records are redacted before they are stored.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "***"
#: Shorter forms are not redacted: a one- to three-character "secret" would also match ordinary
#: text everywhere (and cannot protect anything anyway).
MIN_FORM_LENGTH = 4

_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # longest first


def register(secret: str | None, *, user: str | None = None) -> None:
    """Remember ``secret`` (and, for basic auth, ``user``) so :func:`redact` hides every form of it."""
    if not secret:
        return
    global _forms
    plain = {secret}
    if ":" in secret:
        plain.add(secret.split(":", 1)[1])  # the password of user:password
    if user:
        plain.add(f"{user}:{secret}")
    forms = set()
    for text in plain:
        if not text:
            continue
        forms.update(_spellings(text))
        for encoded in _base64_forms(text.encode("utf-8")):
            forms.add(encoded)
    with _lock:
        _forms = tuple(sorted(set(_forms) | {f for f in forms if len(f) >= MIN_FORM_LENGTH}, key=len, reverse=True))


def _spellings(text: str) -> Iterable[str]:
    yield text
    yield json.dumps(text)[1:-1]  # inside JSON text
    yield json.dumps(text, ensure_ascii=False)[1:-1]
    yield repr(text)[1:-1]  # inside a Python repr
    yield quote(text, safe="")  # URL-encoded
    yield quote(text)


def _base64_forms(data: bytes) -> Iterable[str]:
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(data).decode("ascii")
        yield text
        yield text.rstrip("=")


def redact(text: str) -> str:
    """``text`` with every registered secret form replaced by ``***``."""
    forms = _forms
    if not forms or not isinstance(text, str):
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_data(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings ...) with every string redacted, keys included."""
    if not _forms:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_data(v) for v in value)
    return value


def forget_all() -> None:
    """Forget every registered secret (tests)."""
    global _forms
    with _lock:
        _forms = ()
