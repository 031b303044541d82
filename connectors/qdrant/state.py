"""The sync engine's companion collection in Qdrant (layout in the package docstring)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from .._base import check_batch_size, dedupe
from .._state import (
    StateCollection,
    StateRecord,
    check_state_keys,
    check_state_kind,
    state_meta_json,
    state_vector,
)
from .._errors import CollectionNotFound
from .client import Connection, READ_BATCH, WRITE_BATCH, _NAMESPACE
from .layout import _pick_vector


# -- state collection ------------------------------------------------------------------------------


class QdrantState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    def __init__(self, conn: Callable[[], Connection], name: str):
        super().__init__(name)
        self._conn = conn  # the store's live connection (it may be closed and reopened)

    @property
    def conn(self) -> Connection:
        return self._conn()

    @staticmethod
    def _point(kind: str, key: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))

    def dimension(self) -> int:
        return _pick_vector(self.name, self.conn.vectors_config(self.name), None).dim

    def count(self) -> int:
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        with self.conn.calls("count state", self.name):
            return int(self.conn.client.count(self.name, exact=True).count)

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def _create(self, dimension: int) -> None:
        with self.conn.calls("create state collection", self.name, write=True):
            self.conn.client.create_collection(
                self.name, vectors_config=models.VectorParams(size=int(dimension), distance=models.Distance.DOT))
            if self.conn.config.is_server:  # local mode ignores payload indexes (and warns)
                self.conn.client.create_payload_index(self.name, "kind", models.PayloadSchemaType.KEYWORD,
                                                      wait=True)

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        check_state_kind(kind)
        records = list(records)
        if not records:
            return
        keys = [r.key for r in records]
        check_state_keys(self.name, keys)
        dim = self.dimension()
        points = []
        for r in records:
            vec, meta = state_vector(self.name, r, dim), state_meta_json(self.name, r)
            points.append(models.PointStruct(id=self._point(kind, r.key), vector=vec.tolist(),
                                             payload={"kind": kind, "key": r.key, "meta": meta,
                                                      "has_vector": r.vector is not None}))
        for start in range(0, len(points), WRITE_BATCH):
            with self.conn.calls("upsert state", self.name, write=True):
                self.conn.client.upsert(self.name, points=points[start : start + WRITE_BATCH], wait=True)

    @staticmethod
    def _record(p: Any) -> StateRecord:
        payload = p.payload or {}
        vec = p.vector.get("") if isinstance(p.vector, dict) else p.vector
        keep = payload.get("has_vector") and vec is not None
        return StateRecord(str(payload.get("key")), np.asarray(vec, dtype=np.float32) if keep else None,
                           json.loads(payload.get("meta") or "{}"))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        keys = dedupe(keys)
        out: list[StateRecord] = []
        for start in range(0, len(keys), READ_BATCH):
            ids = [self._point(kind, k) for k in keys[start : start + READ_BATCH]]
            with self.conn.calls("retrieve state", self.name):
                points = self.conn.client.retrieve(self.name, ids=ids, with_payload=True, with_vectors=True)
            out += [self._record(p) for p in points if (p.payload or {}).get("kind") == kind]
        order = {k: n for n, k in enumerate(keys)}
        return sorted(out, key=lambda r: order.get(r.key, len(order)))

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value=kind))])
        offset = None
        while True:
            with self.conn.calls("scroll state", self.name):
                points, offset = self.conn.client.scroll(self.name, scroll_filter=flt, limit=batch_size,
                                                         offset=offset, with_payload=True, with_vectors=True)
            if points:
                yield [self._record(p) for p in points]
            if offset is None:
                return

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        keys = dedupe(keys)
        for start in range(0, len(keys), WRITE_BATCH):
            ids = [self._point(kind, k) for k in keys[start : start + WRITE_BATCH]]
            with self.conn.calls("delete state", self.name, write=True):
                self.conn.client.delete(self.name, points_selector=models.PointIdsList(points=ids), wait=True)

    def drop(self) -> None:
        if self.exists():
            with self.conn.calls("delete state collection", self.name, write=True):
                self.conn.client.delete_collection(self.name)
