"""The sync engine's companion collection in Chroma (layout in the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .._arrays import chunks, float32_rows
from .._base import check_batch_size, dedupe
from .._state import (
    StateCollection,
    StateRecord,
    check_state_keys,
    check_state_kind,
    state_meta_json,
    state_vector,
)
from .._errors import CollectionNotFound, UnsupportedCollection
from .client import Connection, STATE_SPACE
from .pages import scan_pages


# -- state collection ------------------------------------------------------------------------------


class ChromaState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    def __init__(self, conn: Callable[[], Connection], name: str):
        super().__init__(name)
        self._conn = conn  # the store's live connection (it may be closed and reopened)

    @property
    def conn(self) -> Connection:
        return self._conn()

    def _coll(self) -> Any:
        return self.conn.get_collection(self.name)

    def dimension(self) -> int:
        return self._dimension(self._coll())

    def count(self) -> int:
        coll = self._coll()
        with self.conn.calls("count state", self.name):
            return int(coll.count())

    def _dimension(self, coll: Any) -> int:
        dim = (coll.metadata or {}).get("dimension")
        if isinstance(dim, int) and dim > 0:
            return dim
        with self.conn.calls("peek state", self.name):
            page = coll.get(limit=1, include=["embeddings"])
        if not page["ids"]:
            raise UnsupportedCollection(f"state collection {self.name!r} has no dimension in its metadata and no records")
        return float32_rows(page["embeddings"], 0).shape[1]

    @staticmethod
    def _id(kind: str, key: str) -> str:
        return f"{kind}:{key}"

    def exists(self) -> bool:
        return self.conn.collection_exists(self.name)

    def _create(self, dimension: int) -> None:
        with self.conn.calls("create state collection", self.name, write=True):
            self.conn.client.get_or_create_collection(
                self.name, configuration={"hnsw": {"space": STATE_SPACE}}, embedding_function=None,
                metadata={"nudge_sync_state": 1, "dimension": int(dimension)},
            )

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        records = list(records)
        ids, metas = self._prepare(kind, records)
        if not ids:
            return
        coll = self._coll()
        dim = self._dimension(coll)
        vecs = np.stack([state_vector(self.name, r, dim) for r in records])
        for part in chunks(len(ids), self.conn.rows_per_write(dim)):
            with self.conn.calls("upsert state", self.name, write=True):
                coll.upsert(ids=ids[part], embeddings=vecs[part], metadatas=metas[part])

    def put_meta(self, kind: str, records: Sequence[StateRecord]) -> None:
        # metadata alone: about 3x cheaper than an upsert that rewrites the HNSW entries as well
        records = list(records)
        ids, metas = self._prepare(kind, records)
        if not ids:
            return
        coll = self._coll()
        for part in chunks(len(ids), self.conn.rows_per_write(self._dimension(coll))):
            with self.conn.calls("update state", self.name, write=True):
                coll.update(ids=ids[part], metadatas=metas[part])

    def _prepare(self, kind: str, records: list[StateRecord]) -> tuple[list[str], list[dict[str, Any]]]:
        """Validated Chroma ids and metadata rows for ``records``."""
        check_state_kind(kind)
        keys = [r.key for r in records]
        check_state_keys(self.name, keys)
        metas = [{"kind": kind, "key": r.key, "meta": state_meta_json(self.name, r), "has_vector": r.vector is not None}
                 for r in records]
        return [self._id(kind, k) for k in keys], metas

    def _records(self, page: Mapping[str, Any]) -> list[StateRecord]:
        vecs = float32_rows(page["embeddings"], 0)
        out = []
        for vec, meta in zip(vecs, page["metadatas"] or []):
            meta = meta or {}
            out.append(StateRecord(key=str(meta.get("key")), vector=vec.copy() if meta.get("has_vector") else None,
                                   meta=json.loads(meta.get("meta") or "{}")))
        return out

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        coll = self._coll()
        ids = dedupe(self._id(kind, k) for k in keys)
        out: list[StateRecord] = []
        for part in chunks(len(ids), self.conn.max_batch()):
            with self.conn.calls("get state", self.name):
                page = coll.get(ids=ids[part], include=["embeddings", "metadatas"])
            out.extend(self._records(page))
        return out

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        coll = self._coll()
        for page in scan_pages(self.conn, coll, self.name, batch_size, ["embeddings", "metadatas"], where={"kind": kind}):
            yield self._records(page)

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        coll = self._coll()
        ids = dedupe(self._id(kind, k) for k in keys)
        for part in chunks(len(ids), self.conn.max_batch()):
            with self.conn.calls("delete state", self.name, write=True):
                coll.delete(ids=ids[part])

    def drop(self) -> None:
        try:
            with self.conn.calls("delete state collection", self.name, write=True):
                self.conn.client.delete_collection(self.name)
        except CollectionNotFound:
            pass
