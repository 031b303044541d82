"""Planted secrets and the forms in which they could leak (issue #10, defect 5)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

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
def planted_credentials(backend: UserBackend, uri: str, secret: str, directory: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(URI, environment) that carry ``secret`` to a real backend: its default variable where the
    server ignores or accepts it, and on Milvus 2.3.5 (authentication on) the password of a user
    created for the block, read from a secret file."""
    if backend.name != "milvus-2.3.5":
        yield uri, {SECRET_ENV[backend.backend]: secret}
        return
    user = "u" + uuid.uuid4().hex[:12]
    with backend.native() as h:
        h.client.create_user(user, secret)
        h.client.grant_role(user, "admin")
        _wait_until_granted(h.client_uri, f"{user}:{secret}", parse_qs(urlsplit(uri).query)["collection"][0])
    path = directory / "milvus-token"
    path.write_text(f"{user}:{secret}")
    path.chmod(0o600)
    try:
        yield uri.split("&secret_file=")[0] + f"&secret_file={path}", {}
    finally:
        with backend.native() as h:
            h.client.revoke_role(user, "admin")
            h.client.drop_user(user)


def _wait_until_granted(client_uri: str, token: str, collection: str, timeout: float = 30.0) -> None:
    """Milvus' proxies learn a new grant asynchronously: a command started right after
    ``grant_role`` was refused (PERMISSION_DENIED on list_partitions) now and then. Wait until the
    user may read the collection's layout, as the commands will."""
    from pymilvus import MilvusClient

    probe = MilvusClient(uri=client_uri, token=token, timeout=10, dedicated=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                probe.list_partitions(collection)
                probe.describe_collection(collection)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        probe.close()
