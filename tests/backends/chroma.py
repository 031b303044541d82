"""Chroma harnesses: ``chroma-persistent`` (PersistentClient on a temp dir, in this process) and
``chroma-http`` (a real ``chroma run`` server on a free loopback port, started and stopped by PID).

Collections are built with the native client only. ``rich=True`` records carry metadata of every
type Chroma 1.5 accepts (str incl. unicode, int, float, bool, non-empty one-type lists) and a
document; a few records deliberately have no document or no metadata.

Outside pytest: ``start_chroma_server(data_dir)`` -> ``(ServerProcess, "http://127.0.0.1:PORT")``.

About ``chroma-http`` and credentials: the ``chroma run`` server of chromadb 1.5.9 cannot enforce
authentication. Its CLI starts the Rust frontend with a no-op authenticator (``Arc::new(())``),
``FrontendServerConfig`` has no auth section, and ``CHROMA_SERVER_AUTHN_PROVIDER`` /
``CHROMA_SERVER_AUTHN_CREDENTIALS`` were settings of the pre-1.0 Python FastAPI server, which
``chroma run`` no longer starts. So :meth:`ChromaHarness.bad_credentials_uri` returns None; the
credentials path is tested in test_chroma_specific.py through an authenticating loopback proxy in
front of the real server.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._procs import ServerProcess, closed_port, free_port, http_ok
from tests.backends import Harness, RecordId, fast_tmp_dir

__all__ = ["harness_chroma_persistent", "harness_chroma_http"]

SPACES = {"cosine": "cosine", "dot": "ip", "l2": "l2"}


def chroma_name(name: str) -> str:
    """A valid Chroma collection name for a test's name.

    Chroma names must start and end with a letter or digit, but tests/conftest.py's
    ``collection_name`` cuts test names at 40 characters and may end on "_" (e.g.
    "c7_test_update_with_unknown_ids_is_refused_"). Such names get a trailing "0"; valid names are
    unchanged. Applied consistently by every harness method, so tests never see the difference.
    """
    return name if name[-1:].isalnum() else name + "0"


def chroma_binary() -> str:
    """The ``chroma`` CLI of the running interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("chroma")
    if beside.exists():
        return str(beside)
    found = shutil.which("chroma")
    if not found:
        raise RuntimeError("the `chroma` CLI is not installed (pip install chromadb)")
    return found


def start_chroma_server(data_dir: Path, log_dir: Path | None = None, port: int | None = None,
                        timeout: float = 60.0) -> tuple[ServerProcess, str]:
    """Start ``chroma run`` on 127.0.0.1 and wait for its heartbeat. Returns (process, base URL)."""
    port = port or free_port()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(
        f"chroma-{port}",
        [chroma_binary(), "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        log_dir or data_dir.parent,
        # NO_COLOR keeps the log readable; nothing here configures auth (see the module docstring).
        env={"NO_COLOR": "1"},
    ).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{base}/api/v2/heartbeat"), timeout=timeout)
    return proc, base


def rich_metadata(i: int) -> dict[str, Any] | None:
    """Deterministic metadata using every value type Chroma accepts; None for every 11th record."""
    if i % 11 == 10:
        return None
    return {
        "title": f"Título nº{i} — ünïcödé ✓ 日本語",
        "n": i,
        "big": 2**40 + i,
        "neg": -i,
        "score": i * 0.5 + 0.25,
        "ratio": 1 / (i + 3),
        "flag": i % 2 == 0,
        "tags": ["alpha", f"t{i % 5}", "ß"],
        "nums": [i, i + 1, -7],
        "floats": [0.5, i * 1.5],
        "bools": [True, i % 3 == 0],
    }


def rich_document(i: int) -> str | None:
    """A document per record (None for every 7th record): must survive every write untouched."""
    if i % 7 == 6:
        return None
    return f"document {i}: naïve café — 🙂 {'x' * (i % 13)}"


class ChromaHarness(Harness):
    backend = "chroma"
    id_types = ("str",)

    def __init__(self, name: str, client: Any, *, path: Path | None = None, base_url: str | None = None,
                 server: ServerProcess | None = None):
        self.name = name
        self.client = client
        self.path = path
        self.base_url = base_url
        self.server = server
        self.is_server = base_url is not None

    # Construction ----------------------------------------------------------------------------

    @classmethod
    def persistent(cls, path: Path) -> ChromaHarness:
        import chromadb

        path = Path(path).resolve()  # the connector resolves too: one shared chromadb System per path
        return cls("chroma-persistent", chromadb.PersistentClient(path=str(path)), path=path)

    @classmethod
    def http(cls, data_dir: Path, log_dir: Path | None = None) -> ChromaHarness:
        import chromadb

        proc, base = start_chroma_server(data_dir, log_dir)
        port = int(base.rsplit(":", 1)[1])
        try:
            client = chromadb.HttpClient(host="127.0.0.1", port=port)
        except Exception:
            proc.stop()
            raise
        return cls("chroma-http", client, base_url=base, server=proc)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.server is not None:
                self.server.stop()

    # Harness API -----------------------------------------------------------------------------

    def uri(self, collection: str) -> str:
        collection = chroma_name(collection)
        if self.base_url is not None:
            return f"chroma+{self.base_url}?collection={collection}"
        return f"chroma://{self.path}?collection={collection}"

    def _get(self, collection: str) -> Any:
        return self.client.get_collection(chroma_name(collection), embedding_function=None)

    def create(self, collection: str, ids: Sequence[RecordId], vectors: np.ndarray, *,
               metric: str = "cosine", rich: bool = True) -> None:
        coll = self.client.create_collection(
            chroma_name(collection), configuration={"hnsw": {"space": SPACES[metric]}}, embedding_function=None
        )
        ids = [str(i) for i in ids]
        vectors = np.asarray(vectors, dtype=np.float32)
        step = self.client.get_max_batch_size()
        for s in range(0, len(ids), step):
            part = range(s, min(len(ids), s + step))
            extra: dict[str, Any] = {}
            if rich:
                extra["metadatas"] = [rich_metadata(i) for i in part]
                extra["documents"] = [rich_document(i) for i in part]
            coll.add(ids=ids[s:s + step], embeddings=vectors[s:s + step], **extra)

    def _pages(self, collection: str, include: list[str], page: int = 5000) -> Iterator[dict[str, Any]]:
        coll = self._get(collection)
        total = coll.count()
        for offset in range(0, total, page):
            yield coll.get(limit=page, offset=offset, include=include)

    def snapshot(self, collection: str) -> dict[RecordId, bytes]:
        out: dict[RecordId, bytes] = {}
        for got in self._pages(collection, ["metadatas", "documents"]):
            for rid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"]):
                out[rid] = json.dumps({"metadata": meta, "document": doc}, sort_keys=True,
                                      ensure_ascii=False).encode("utf-8")
        return out

    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        out: dict[RecordId, np.ndarray] = {}
        for got in self._pages(collection, ["embeddings"]):
            emb = np.asarray(got["embeddings"], dtype=np.float32)
            out.update(zip(got["ids"], emb))
        return out

    def count(self, collection: str) -> int:
        return self._get(collection).count()

    def drop(self, collection: str) -> None:
        import chromadb.errors

        try:
            self.client.delete_collection(chroma_name(collection))
        except (chromadb.errors.NotFoundError, ValueError):
            pass

    def collections(self) -> list[str]:
        return [c.name for c in self.client.list_collections()]

    def unreachable_uri(self, collection: str) -> str | None:
        if not self.is_server:
            return None
        return f"chroma+http://127.0.0.1:{closed_port()}?collection={collection}&retry_budget=1"

    def bad_credentials_uri(self, collection: str) -> tuple[str, dict[str, str]] | None:
        return None  # `chroma run` enforces no auth (module docstring); see test_chroma_specific.py

    def extra(self) -> dict[str, Any]:
        import chromadb

        return {"chromadb": chromadb.__version__, "server": self.base_url or str(self.path)}


@pytest.fixture(scope="session")
def harness_chroma_persistent(tmp_path_factory) -> Iterator[ChromaHarness]:
    path = fast_tmp_dir("nudge-sync-chroma-persistent-", tmp_path_factory.getbasetemp())  # SQLite: no fsync wait
    try:
        h = ChromaHarness.persistent(path)
        yield h
        h.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def harness_chroma_http(tmp_path_factory, server_logs) -> Iterator[ChromaHarness]:
    path = fast_tmp_dir("nudge-sync-chroma-http-", tmp_path_factory.getbasetemp())
    try:
        h = ChromaHarness.http(path / "data", server_logs)
        yield h
        h.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
