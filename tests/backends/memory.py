"""Memory harness: ``memory`` (``connectors.memory``, a process-wide in-memory database).

Collections are built and inspected with the memory database's own calls (``create_collection``,
``upsert``, ``scan``, ``count``: its "native client"), never with the store under test. The database
lives in this process only, so suites that run ``nudge-sync`` as separate processes (tests/cli,
tests/user) and tests that reopen a database from another process leave it out.

``rich=True`` records carry a payload with nested JSON, unicode, big ints, bools and nulls (every 13th
record has an empty one), which the contract suite proves an update leaves byte-identical.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from connectors.memory import database, forget, stored_form
from tests.backends import Harness, RecordId
from tests.backends.qdrant import rich_payload

__all__ = ["MemoryHarness", "harness_memory"]

_databases = itertools.count()


class MemoryHarness(Harness):
    backend = "memory"
    id_types = ("int", "str")
    #: lives in this test process: no subprocess can reach it
    in_process_only = True

    def __init__(self, name: str, database_name: str):
        self.name = name
        self.database_name = database_name
        self.client = database(database_name)

    def close(self) -> None:
        forget(self.database_name)

    def uri(self, collection: str) -> str:
        return f"memory://{self.database_name}?collection={collection}"

    def create(self, collection: str, ids: Sequence[RecordId], vectors: np.ndarray, *,
               metric: str = "cosine", rich: bool = True) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        id_type = "str" if ids and isinstance(ids[0], str) else "int"
        self.client.create_collection(collection, vectors.shape[1], metric, id_type)
        payloads = [rich_payload(j) if rich else {} for j in range(len(ids))]
        self.client.upsert(collection, list(ids), stored_form(vectors, metric), payloads)

    def _records(self, collection: str) -> Iterator[tuple[Any, np.ndarray, dict[str, Any]]]:
        offset = 0
        while page := self.client.scan(collection, offset, 4096):
            offset += len(page)
            yield from page

    def snapshot(self, collection: str) -> dict[RecordId, bytes]:
        return {i: json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
                for i, _, payload in self._records(collection)}

    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        return {i: vec for i, vec, _ in self._records(collection)}

    def count(self, collection: str) -> int:
        return self.client.count(collection)

    def drop(self, collection: str) -> None:
        self.client.drop_collection(collection)

    def collections(self) -> list[str]:
        return self.client.list_collections()

    def extra(self) -> dict[str, Any]:
        return {"database": self.database_name, "mode": "in-process memory"}


@pytest.fixture(scope="session")
def harness_memory() -> Iterator[MemoryHarness]:
    h = MemoryHarness("memory", f"harness-{next(_databases)}")
    try:
        yield h
    finally:
        h.close()
