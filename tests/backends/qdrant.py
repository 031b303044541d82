"""Qdrant harness: ``qdrant-local`` (``QdrantClient(path=...)`` on a temp directory, in this process).

Collections are built and inspected with plain qdrant-client calls (``create_collection``,
``upsert``, ``scroll``, ``count``), never with the connector under test.

One client per directory
------------------------
Qdrant local mode locks its directory (``.lock``, an exclusive non-blocking file lock), and the
lock also refuses a second ``QdrantClient`` on the same path in the same process. The contract
tests inspect a collection with the harness *while* the store under test is open on it, so the
two cannot hold separate clients, and opening/closing a harness client around each operation would
fail while the store is open (and would reload the whole collection from SQLite each time). So the
harness holds the process-wide client of :func:`connectors.qdrant.local_client` — the same native
``QdrantClient`` object the store gets — for the whole session. That share is only the client
object: every fixture operation is still a native call. What an in-process share cannot show
(that a write reached the disk, not just the client's memory) is tested in
tests/contract/test_qdrant_specific.py by reopening a directory from a fresh client.

Speed
-----
Local mode commits every point to SQLite separately (``INSERT OR REPLACE`` + commit per point),
so its write speed is the disk's fsync rate: measured here, 5,000 upserts took 53 s under /tmp and
2.4 s under /dev/shm. The session directory therefore lives on tmpfs (``/dev/shm``) when there is
one — the same engine and the same SQLite files, without the fsync wait — else under pytest's
tmp dir; ``NUDGE_SYNC_QDRANT_TMP=DIR`` picks another parent. Fixtures upsert in batches of 4,096
points (the per-point commit dominates; larger batches gain nothing).

``rich=True`` collections have two named vectors, ``text`` (the one nudge-sync writes, reached
with ``vector=text`` in the URI) and ``aux`` (3-d, must stay byte-identical), and payloads with
nested JSON, unicode, lists, numbers, big ints, bools and nulls (every 13th record has an empty
payload). ``rich=False`` collections have one unnamed vector. There is no Qdrant server binary on
these machines (DESIGN.md section 4): the server code path is covered by the unreachable-server
contract test and by tests/contract/test_qdrant_specific.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

from connectors.qdrant import local_client
from tests._procs import closed_port
from tests.backends import Harness, RecordId, fast_tmp_dir

__all__ = ["QdrantHarness", "harness_qdrant_local", "rich_payload", "fast_tmp_dir"]

DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "l2": models.Distance.EUCLID}
TARGET, AUX = "text", "aux"
UPSERT_BATCH = 4096


def rich_payload(i: int) -> dict[str, Any]:
    if i % 13 == 12:
        return {}
    return {
        "title": f"Título nº{i} — ünïcödé ✓ 日本語",
        "n": i, "big": 2**53 - i, "score": i * 0.5 + 0.25, "flag": i % 2 == 0, "none": None,
        "tags": ["alpha", f"t{i % 5}"], "nested": {"a": [1, {"b": "c"}], "depth": {"x": i}},
        "document": f"document {i}: naïve café 🙂",
    }


class QdrantHarness(Harness):
    backend = "qdrant"
    id_types = ("int", "uuid")

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        self._stack = ExitStack()
        self.client = self._stack.enter_context(local_client(str(path)))
        self._named: set[str] = set()

    def close(self) -> None:
        self._stack.close()

    def uri(self, collection: str) -> str:
        extra = f"&vector={TARGET}" if collection in self._named else ""
        return f"qdrant://{self.path}?collection={collection}{extra}"

    def create(self, collection: str, ids: Sequence[RecordId], vectors: np.ndarray, *,
               metric: str = "cosine", rich: bool = True) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if rich:
            config: Any = {TARGET: models.VectorParams(size=dim, distance=DISTANCES[metric]),
                           AUX: models.VectorParams(size=3, distance=models.Distance.DOT)}
            self._named.add(collection)
        else:
            config = models.VectorParams(size=dim, distance=DISTANCES[metric])
        self.client.create_collection(collection, vectors_config=config)
        aux = np.random.default_rng(len(ids)).standard_normal((len(ids), 3)).astype(np.float32)
        for s in range(0, len(ids), UPSERT_BATCH):
            part = range(s, min(len(ids), s + UPSERT_BATCH))
            if rich:
                batch = models.Batch(ids=[ids[j] for j in part],
                                     vectors={TARGET: vectors[part.start:part.stop].tolist(),
                                              AUX: aux[part.start:part.stop].tolist()},
                                     payloads=[rich_payload(j) for j in part])
            else:
                batch = models.Batch(ids=[ids[j] for j in part], vectors=vectors[part.start:part.stop].tolist())
            self.client.upsert(collection, points=batch, wait=True)

    def _scroll(self, collection: str, with_payload: bool) -> Iterator[Any]:
        offset = None
        while True:
            points, offset = self.client.scroll(collection, limit=2048, offset=offset,
                                                with_payload=with_payload, with_vectors=True)
            yield from points
            if offset is None:
                return

    def snapshot(self, collection: str) -> dict[RecordId, bytes]:
        out: dict[RecordId, bytes] = {}
        for p in self._scroll(collection, True):
            others = {k: np.asarray(v, np.float32).tobytes().hex() for k, v in (p.vector or {}).items()
                      if isinstance(p.vector, dict) and k != TARGET}
            out[p.id] = json.dumps({"payload": p.payload, "other_vectors": others}, sort_keys=True,
                                   ensure_ascii=False).encode("utf-8")
        return out

    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        return {p.id: np.asarray(p.vector[TARGET] if isinstance(p.vector, dict) else p.vector, dtype=np.float32)
                for p in self._scroll(collection, False)}

    def count(self, collection: str) -> int:
        return int(self.client.count(collection, exact=True).count)

    def drop(self, collection: str) -> None:
        if self.client.collection_exists(collection):
            self.client.delete_collection(collection)
        self._named.discard(collection)

    def collections(self) -> list[str]:
        return [c.name for c in self.client.get_collections().collections]

    def unreachable_uri(self, collection: str) -> str | None:
        # no Qdrant server runs here, but the connector's server path (same client, HTTP) is real
        return f"qdrant+http://127.0.0.1:{closed_port()}?collection={collection}&timeout=5&retry_budget=1"

    def extra(self) -> dict[str, Any]:
        return {"path": str(self.path), "mode": "local"}


@pytest.fixture(scope="session")
def harness_qdrant_local(tmp_path_factory) -> Iterator[QdrantHarness]:
    path = fast_tmp_dir("nudge-sync-qdrant-local-", tmp_path_factory.getbasetemp())
    h = QdrantHarness("qdrant-local", path)
    try:
        yield h
    finally:
        h.close()
        shutil.rmtree(path, ignore_errors=True)
