"""The sync engine's companion collection in a memory database.

One record per ``(kind, key)``, with id ``"kind:key"``; the payload holds the kind, the key, the
meta as JSON text (so it round-trips through JSON exactly as on the real backends) and whether the
record has a vector. Vectors are stored as sent: the collection's metric is ``dot``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from .._base import check_batch_size, dedupe
from .._state import (
    StateCollection,
    StateRecord,
    check_state_keys,
    check_state_kind,
    state_meta_json,
    state_vector,
)
from .database import MemoryDatabase

__all__ = ["MemoryState"]

#: Records one scan call reads from the database at a time.
_SCAN_PAGE = 4096


class MemoryState(StateCollection):
    def __init__(self, client: MemoryDatabase, name: str):
        super().__init__(name)
        self.client = client

    @staticmethod
    def _id(kind: str, key: str) -> str:
        return f"{kind}:{key}"

    def exists(self) -> bool:
        return self.client.has_collection(self.name)

    def dimension(self) -> int:
        return self.client.collection(self.name).dimension

    def count(self) -> int:
        return self.client.count(self.name)

    def _create(self, dimension: int) -> None:
        self.client.create_collection(self.name, dimension, "dot", "str", {"nudge_sync_state": 1})

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        records = list(records)
        ids, payloads = self._prepare(kind, records)
        if not ids:
            return
        dim = self.client.collection(self.name).dimension
        vectors = [state_vector(self.name, r, dim) for r in records]
        self.client.upsert(self.name, ids, vectors, payloads)

    def put_meta(self, kind: str, records: Sequence[StateRecord]) -> None:
        records = list(records)
        ids, payloads = self._prepare(kind, records)
        if ids:
            self.client.set_payloads(self.name, ids, payloads)

    def _prepare(self, kind: str, records: list[StateRecord]) -> tuple[list[str], list[dict[str, Any]]]:
        check_state_kind(kind)
        keys = [r.key for r in records]
        check_state_keys(self.name, keys)
        payloads = [{"kind": kind, "key": r.key, "meta": state_meta_json(self.name, r),
                     "has_vector": r.vector is not None} for r in records]
        return [self._id(kind, k) for k in keys], payloads

    @staticmethod
    def _record(vector: Any, payload: dict[str, Any]) -> StateRecord:
        return StateRecord(key=payload["key"], vector=vector if payload["has_vector"] else None,
                           meta=json.loads(payload["meta"]))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        found = self.client.get(self.name, dedupe(self._id(kind, k) for k in keys))
        return [self._record(vec, payload) for vec, payload in found.values()]

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        self.client.collection(self.name)  # CollectionNotFound before the first batch
        batch: list[StateRecord] = []
        offset = 0
        while page := self.client.scan(self.name, offset, _SCAN_PAGE):
            offset += len(page)
            for _, vec, payload in page:
                if (payload or {}).get("kind") == kind:
                    batch.append(self._record(vec, payload))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        self.client.delete(self.name, dedupe(self._id(kind, k) for k in keys))

    def drop(self) -> None:
        self.client.drop_collection(self.name)
