"""Planted secrets and the forms in which they could leak (issue #10, defect 5)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from tests.user._native import UserBackend

#: each backend's default secret variable (README, Store URIs)
SECRET_ENV = {"qdrant": "QDRANT_API_KEY", "milvus": "MILVUS_TOKEN", "chroma": "CHROMA_AUTH_TOKEN"}


def planted() -> str:
    """A secret no message could hold by chance."""
    return f"pl4nted-{uuid.uuid4().hex}"


def secret_forms(secret: str) -> list[str]:
    """The secret as it may leak: plain, URL-quoted, and base64 (standard and URL-safe) at each of
    the three byte alignments it can have inside a longer encoded string (e.g. ``user:secret``
    in an HTTP basic header), cut to the characters the secret alone determines."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe="")}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw).decode()
            first = -(-offset * 4 // 3)  # first character made of secret bits only
            last = (offset + len(raw)) * 4 // 3  # characters after this one carry padding bits
            if last - first >= 8:
                forms.add(text[first:last])
    return sorted(forms)


def find_secret(secret: str, *texts: str) -> list[str]:
    """The forms of ``secret`` found in ``texts``."""
    return [f for f in secret_forms(secret) if any(f in t for t in texts)]


@contextmanager
def planted_credentials(backend: UserBackend, uri: str, secret: str, directory: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    """(URI, environment, the secret to scan for) that carry a secret to a real backend: ``secret``
    in its default variable where the server ignores or accepts it; on Milvus 2.3.5
    (authentication on) the server's own random root password, read from the secret file its URI
    names. (A user created for the test with the admin role was refused ShowPartitions by Milvus
    2.3.5 now and then, for more than 30 s.)"""
    if backend.name != "milvus-2.3.5":
        yield uri, {SECRET_ENV[backend.backend]: secret}, secret
        return
    with backend.native() as h:
        token = h.token or ""
    assert "&secret_file=" in uri and ":" in token, "Milvus 2.3.5 runs with its root password in a secret file"
    yield uri, {}, token.split(":", 1)[1]
