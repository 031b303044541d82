"""The sync engine's companion collection in Milvus (layout in the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from pymilvus import DataType

from .._arrays import chunks
from .._base import check_batch_size, dedupe
from .._state import (
    StateCollection,
    StateRecord,
    check_state_kind,
    state_meta_json,
    state_vector,
)
from .._errors import CollectionNotFound, InvalidVectors, UnsupportedCollection
from .client import Connection, _ID_CHUNK, _ROWS_PER_UPSERT, _STATE_META_BYTES
from .layout import _rows_per_page, in_expression, literal


class SiblingRows(Protocol):
    """What the state needs of the store that hands it out: rows of a sibling collection of the same
    connection, read on a loaded collection (the store's public row API; no import of the store)."""

    @property
    def conn(self) -> Connection: ...

    def ensure_loaded(self, name: str) -> None: ...

    def count_rows(self, name: str) -> int: ...

    def query_rows(self, name: str, expr: str, fields: list[str], *, what: str = "query") -> list[dict[str, Any]]: ...

    def page_rows(self, name: str, pk: str, fields: list[str], page: int, expr: str = "",
                  what: str = "read") -> Iterator[list[dict[str, Any]]]: ...

    def create_keyed(self, name: str, key: str, dim: int, extra: Mapping[str, Any], *, dynamic: bool,
                     description: str = "") -> None: ...


# -- state collection --------------------------------------------------------------------------------


class MilvusState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    KEY = "id"
    max_meta_bytes = _STATE_META_BYTES

    def __init__(self, rows: SiblingRows, name: str):
        super().__init__(name)
        self.rows = rows

    @property
    def conn(self) -> Connection:
        return self.rows.conn

    def _ids(self, kind: str, keys: Iterable[str]) -> list[str]:
        out = []
        for key in keys:
            if not isinstance(key, str):
                raise InvalidVectors(f"state {self.name!r}: key {key!r} must be a str")
            out.append(f"{kind}:{key}")
        return dedupe(out)

    def dimension(self) -> int:
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where} "
                                     "(call create(dimension) first)")
        with self.conn.calls("describe state collection", self.name):
            desc = self.conn.client.describe_collection(self.name, timeout=self.conn.timeout)
        dims = [f.get("params", {}).get("dim") for f in desc.get("fields", []) if f.get("name") == "vector"]
        if not dims or dims[0] is None:
            raise UnsupportedCollection(f"state collection {self.name!r} has no float vector field 'vector': "
                                        "nudge-sync did not create it")
        return int(dims[0])

    def count(self) -> int:
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        return self.rows.count_rows(self.name)

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def _opened(self) -> None:
        self.rows.ensure_loaded(self.name)

    def _create(self, dimension: int) -> None:
        self.rows.create_keyed(
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
        dim = self.dimension()
        rows = []
        for r, rid in zip(records, ids):
            vec = state_vector(self.name, r, dim)
            text = state_meta_json(self.name, r, ensure_ascii=False)  # the size limit counts UTF-8 bytes
            if len(text.encode("utf-8")) > _STATE_META_BYTES:
                raise InvalidVectors(f"state {self.name!r} key {r.key!r}: meta is {len(text.encode())} bytes of JSON; "
                                     f"the Milvus state collection holds at most {_STATE_META_BYTES}")
            rows.append({self.KEY: rid, "vector": vec.tolist(), "kind": kind, "meta": text,
                         "has_vector": r.vector is not None})
        for part in chunks(len(rows), max(1, min(_ROWS_PER_UPSERT, _rows_per_page(dim)))):
            with self.conn.calls("upsert state", self.name, write=True):
                self.conn.client.upsert(self.name, rows[part], timeout=self.conn.timeout)

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
        for part in chunks(len(ids), _ID_CHUNK):
            rows = self.rows.query_rows(self.name, in_expression(self.KEY, ids[part]), [self.KEY, "vector", "meta", "has_vector"],
                                     what="get state")
            out.extend(self._record(r) for r in rows)
        return out

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        fields = [self.KEY, "vector", "meta", "has_vector"]
        for rows in self.rows.page_rows(self.name, self.KEY, fields, batch_size, expr=f"kind == {literal(kind)}",
                                      what="scan state"):
            yield [self._record(r) for r in rows]

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        ids = self._ids(kind, keys)
        if not ids or not self.exists():
            return
        for part in chunks(len(ids), _ID_CHUNK):
            with self.conn.calls("delete state", self.name, write=True):
                self.conn.client.delete(self.name, filter=in_expression(self.KEY, ids[part]), timeout=self.conn.timeout)

    def drop(self) -> None:
        if self.exists():
            with self.conn.calls("drop state collection", self.name, write=True):
                self.conn.client.drop_collection(self.name, timeout=self.conn.timeout)
