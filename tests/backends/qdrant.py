"""Qdrant harness: ``qdrant-local`` (QdrantClient(path=...) on a temp directory, in this process).

Qdrant local mode allows one client per directory: the harness and the store under test share
the process-wide client of ``connectors.qdrant.local_client`` (the native ``QdrantClient`` object;
every fixture operation below is a plain qdrant-client call on it).

``rich=True`` collections have two named vectors, ``text`` (the one nudge-sync writes) and
``aux`` (must stay byte-identical), and payloads with nested JSON, unicode, lists, numbers, bools
and nulls. ``rich=False`` collections have one unnamed vector. There is no Qdrant server binary on
these machines (DESIGN.md section 4): the server code path is covered by the unreachable-server
contract test and by tests/contract/test_qdrant_specific.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

from connectors.qdrant import local_client
from tests._procs import closed_port
from tests.backends import Harness, RecordId

__all__ = ["harness_qdrant_local", "QdrantHarness"]

DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "l2": models.Distance.EUCLID}
TARGET, AUX = "text", "aux"


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
        rng = np.random.default_rng(len(ids))
        for s in range(0, len(ids), 2048):
            points = []
            for j in range(s, min(len(ids), s + 2048)):
                if rich:
                    vec: Any = {TARGET: vectors[j].tolist(), AUX: rng.standard_normal(3).astype(np.float32).tolist()}
                    points.append(models.PointStruct(id=ids[j], vector=vec, payload=rich_payload(j)))
                else:
                    points.append(models.PointStruct(id=ids[j], vector=vectors[j].tolist()))
            self.client.upsert(collection, points=points, wait=True)

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
        return f"qdrant+http://127.0.0.1:{closed_port()}?collection={collection}&timeout=5"


@pytest.fixture(scope="session")
def harness_qdrant_local(tmp_path_factory) -> Iterator[QdrantHarness]:
    h = QdrantHarness("qdrant-local", tmp_path_factory.mktemp("qdrant-local"))
    yield h
    h.close()
