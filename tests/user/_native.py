"""The six backends as the user-level suite drives them: URIs for ``nudge-sync`` processes, and
reads with the database's own client that hold no client open while a CLI process runs.

Embedded Qdrant (local mode) and Milvus Lite lock their path for one process at a time (Qdrant's
``.lock``; Milvus Lite's data-dir lock, which pymilvus keeps after ``client.close()`` until its
in-process server is released), and a Chroma ``PersistentClient`` left open in the test process
would keep caching segments another process rewrites. So each embedded backend gets its own
directory per test, and :meth:`UserBackend.native` opens the native client for one block of reads
and closes it (releasing the path) on the way out. Server backends use the session servers of
tests/backends (a network client held open blocks nobody).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.backends import Harness, RecordId

#: Backends whose companion state lives in a file another process cannot open while we hold it.
EMBEDDED = ("qdrant-local", "milvus-lite", "chroma-persistent")
SERVERS = ("milvus-lite-server", "milvus-2.3.5", "chroma-http")


class UserBackend:
    """One harness, seen from outside the nudge-sync processes."""

    def __init__(self, name: str, backend: str):
        self.name = name
        self.backend = backend  # "qdrant" | "milvus" | "chroma"

    @property
    def is_server(self) -> bool:
        return self.name in SERVERS

    @contextmanager
    def native(self) -> Iterator[Harness]:
        """The harness (native client) for one block of calls; released afterwards where it must be."""
        raise NotImplementedError

    def uri(self, collection: str, **options: Any) -> str:
        """The store URI of ``collection`` plus URI ``options`` (e.g. ``retry_budget=5``)."""
        return self._base_uri(collection) + "".join(f"&{k}={v}" for k, v in options.items())

    def _base_uri(self, collection: str) -> str:
        raise NotImplementedError

    def rollback_is_bit_exact(self, metric: str) -> bool:
        """Whether originals come back bit for bit: Qdrant and Chroma re-normalise cosine vectors
        on write (README, Safety), everything else stores what it is sent."""
        return not (metric == "cosine" and self.backend in ("qdrant", "chroma"))

    # one-shot native operations -------------------------------------------------------------

    def create(self, collection: str, ids: list[RecordId], vectors: np.ndarray, *, metric: str = "cosine",
               rich: bool = True) -> None:
        with self.native() as h:
            h.create(collection, ids, vectors, metric=metric, rich=rich)

    def read(self, collection: str) -> tuple[dict[RecordId, np.ndarray], dict[RecordId, bytes]]:
        """(vectors, snapshot of everything else) in one open."""
        with self.native() as h:
            return h.vectors(collection), h.snapshot(collection)

    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        with self.native() as h:
            return h.vectors(collection)

    def collections(self) -> list[str]:
        with self.native() as h:
            return h.collections()

    def dump(self, collection: str) -> str:
        """Everything but the vectors of any collection (e.g. the state), as text to scan."""
        with self.native() as h:
            return dump(h, collection)

    def drop_all(self, prefix: str) -> None:
        with self.native() as h:
            for name in h.collections():
                if name.startswith(prefix):
                    h.drop(name)


class SharedServerBackend(UserBackend):
    """A session server of tests/backends (never killed by the user suite)."""

    def __init__(self, harness: Harness):
        super().__init__(harness.name, harness.backend)
        self.harness = harness

    @contextmanager
    def native(self) -> Iterator[Harness]:
        yield self.harness

    def _base_uri(self, collection: str) -> str:
        return self.harness.uri(collection)

    def app_config(self) -> dict[str, Any]:
        """How an application process reaches this server with the native client (tests/user/_writer.py)."""
        h: Any = self.harness
        if self.backend == "chroma":
            return {"backend": "chroma", "url": h.base_url}
        return {"backend": "milvus", "url": h.client_uri, "token": h.token}


class QdrantLocalBackend(UserBackend):
    def __init__(self, path: Path):
        super().__init__("qdrant-local", "qdrant")
        self.path = path
        self._named: set[str] = set()  # collections with named vectors: their URIs say vector=text

    @contextmanager
    def native(self) -> Iterator[Harness]:
        from tests.backends.qdrant import QdrantHarness

        h = QdrantHarness(self.name, self.path)  # opens the directory (one process at a time)
        h._named = self._named
        try:
            yield h
        finally:
            h.close()  # the last user in this process closes the client and frees the directory

    def _base_uri(self, collection: str) -> str:
        # as QdrantHarness.uri, without opening the directory
        return f"qdrant://{self.path}?collection={collection}" + ("&vector=text" if collection in self._named else "")


class MilvusLiteBackend(UserBackend):
    def __init__(self, path: Path):
        super().__init__("milvus-lite", "milvus")
        self.path = path

    @contextmanager
    def native(self) -> Iterator[Harness]:
        from milvus_lite.server_manager import server_manager_instance

        from tests.backends.milvus import MilvusHarness

        h = MilvusHarness(self.name, str(self.path), f"milvus://{self.path}", is_server=False)
        try:
            for name in h.client.list_collections():
                h.client.load_collection(name)  # a reopened Milvus Lite file has every collection released
            yield h
        finally:
            h.close()
            # pymilvus keeps the data-dir lock after close(): only releasing its in-process server
            # lets a nudge-sync process open the file
            server_manager_instance.release_server(str(self.path))

    def _base_uri(self, collection: str) -> str:
        return f"milvus://{self.path}?collection={collection}&vector=vector"  # as MilvusHarness.uri


class ChromaPersistentBackend(UserBackend):
    def __init__(self, path: Path):
        super().__init__("chroma-persistent", "chroma")
        self.path = path

    @contextmanager
    def native(self) -> Iterator[Harness]:
        from tests.backends.chroma import ChromaHarness

        h = ChromaHarness.persistent(self.path)
        try:
            yield h
        finally:
            h.close()  # the last client of a path stops chromadb's shared system: no stale cache next time

    def _base_uri(self, collection: str) -> str:
        from tests.backends.chroma import chroma_name

        return f"chroma://{self.path}?collection={chroma_name(collection)}"  # as ChromaHarness.uri


def dump(h: Harness, collection: str) -> str:
    """Everything but the vectors of any collection (e.g. the state), as text to scan, read through
    an open harness."""
    import json

    if h.backend == "qdrant":
        points, _ = h.client.scroll(collection, limit=100_000, with_payload=True, with_vectors=False)
        rows: Any = [{"id": p.id, "payload": p.payload} for p in points]
    elif h.backend == "milvus":
        h.client.load_collection(collection)
        rows = h.client.query(collection, filter="", output_fields=["*"], limit=16_384, consistency_level="Strong")
    else:
        got = h.client.get_collection(collection, embedding_function=None).get(include=["metadatas", "documents"])
        rows = {k: got[k] for k in ("ids", "metadatas", "documents")}
    return json.dumps(rows, default=repr, ensure_ascii=False)


def embedded_backend(name: str, directory: Path) -> UserBackend:
    directory.mkdir(parents=True, exist_ok=True)
    if name == "qdrant-local":
        return QdrantLocalBackend(directory)
    if name == "milvus-lite":
        return MilvusLiteBackend(directory / "lite.db")
    if name == "chroma-persistent":
        return ChromaPersistentBackend(directory)
    raise ValueError(f"{name} is not an embedded backend")


def checksum(snapshot: dict[RecordId, bytes]) -> str:
    """One digest of every record's non-vector content (ids included), order-independent."""
    h = hashlib.sha256()
    for key in sorted(snapshot, key=repr):
        h.update(repr(key).encode() + b"\0" + snapshot[key] + b"\0")
    return h.hexdigest()
