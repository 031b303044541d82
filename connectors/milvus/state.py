"""The sync engine's companion collection in Milvus (layout in the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
from pymilvus import DataType

from .._base import (
    StateCollection,
    StateRecord,
    check_batch_size,
    check_state_dimension,
    check_state_kind,
    dedupe,
    state_meta_json,
    state_vector,
)
from .._errors import CollectionNotFound, InvalidVectors, UnsupportedCollection
from .client import _Connection, _ID_CHUNK, _ROWS_PER_UPSERT, _STATE_META_BYTES
from .layout import _chunks, _in, _literal, _rows_per_page

if TYPE_CHECKING:
    from .store import MilvusStore


# -- state collection --------------------------------------------------------------------------------


class MilvusState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    KEY = "id"
    max_meta_bytes = _STATE_META_BYTES

    def __init__(self, store: MilvusStore, name: str):
        self.store = store
        self.name = name

    @property
    def conn(self) -> _Connection:
        return self.store.conn

    def _ids(self, kind: str, keys: Iterable[str]) -> list[str]:
        out = []
        for key in keys:
            if not isinstance(key, str):
                raise InvalidVectors(f"state {self.name!r}: key {key!r} must be a str")
            out.append(f"{kind}:{key}")
        return dedupe(out)

    def _dimension(self) -> int:
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where} "
                                     "(call create(dimension) first)")
        return self.store._log_layout(self.name)[2]

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def create(self, dimension: int) -> None:
        dimension = check_state_dimension(self.name, dimension)
        if self.exists():
            have = self._dimension()
            if have != dimension:
                raise UnsupportedCollection(f"state collection {self.name!r} holds {have}-d vectors, not {dimension}-d")
            self.store._ensure_loaded(self.name)
            return
        self.store._create_keyed(
            self.name, self.KEY, int(dimension),
            {"kind": (DataType.VARCHAR, {"max_length": 256}),
             "meta": (DataType.VARCHAR, {"max_length": _STATE_META_BYTES}),
             "has_vector": (DataType.BOOL, {})},
            dynamic=False, description=f"nudge-sync state (dimension {int(dimension)})")

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        check_state_kind(kind)
        records = list(records)
        if not records:
            return
        keys = [r.key for r in records]
        ids = self._ids(kind, keys)
        if len(ids) != len(keys):
            raise InvalidVectors(f"state {self.name!r}: duplicate key(s) in one put")
        dim = self._dimension()
        rows = []
        for r, rid in zip(records, ids):
            vec = state_vector(self.name, r, dim)
            text = state_meta_json(self.name, r, ensure_ascii=False)  # the size limit counts UTF-8 bytes
            if len(text.encode("utf-8")) > _STATE_META_BYTES:
                raise InvalidVectors(f"state {self.name!r} key {r.key!r}: meta is {len(text.encode())} bytes of JSON; "
                                     f"the Milvus state collection holds at most {_STATE_META_BYTES}")
            rows.append({self.KEY: rid, "vector": vec.tolist(), "kind": kind, "meta": text,
                         "has_vector": r.vector is not None})
        for part in _chunks(len(rows), max(1, min(_ROWS_PER_UPSERT, _rows_per_page(dim)))):
            with self.conn.calls("upsert state", self.name, write=True):
                self.store.client.upsert(self.name, rows[part], timeout=self.conn.timeout)

    @staticmethod
    def _record(row: Mapping[str, Any]) -> StateRecord:
        key = str(row[MilvusState.KEY]).split(":", 1)[1]
        vec = np.asarray(row["vector"], dtype=np.float32) if row["has_vector"] else None
        return StateRecord(key, vec, json.loads(row["meta"]))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        ids = self._ids(kind, keys)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        out: list[StateRecord] = []
        for part in _chunks(len(ids), _ID_CHUNK):
            rows = self.store._query(self.name, _in(self.KEY, ids[part]), [self.KEY, "vector", "meta", "has_vector"],
                                     what="get state")
            out.extend(self._record(r) for r in rows)
        return out

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        fields = [self.KEY, "vector", "meta", "has_vector"]
        for rows in self.store._pages(self.name, self.KEY, fields, batch_size, expr=f"kind == {_literal(kind)}",
                                      what="scan state"):
            yield [self._record(r) for r in rows]

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        ids = self._ids(kind, keys)
        if not ids or not self.exists():
            return
        for part in _chunks(len(ids), _ID_CHUNK):
            with self.conn.calls("delete state", self.name, write=True):
                self.store.client.delete(self.name, filter=_in(self.KEY, ids[part]), timeout=self.conn.timeout)

    def drop(self) -> None:
        if self.exists():
            with self.conn.calls("drop state collection", self.name, write=True):
                self.store.client.drop_collection(self.name, timeout=self.conn.timeout)
