"""The labelled query log kept in a Qdrant collection: one point per entry (id derived from the
query id), the query embedding as its vector and the entry's fields as its payload."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from .._arrays import float32_rows
from .._base import Appended, LabelledQuery, check_batch_size
from .._errors import CollectionNotFound, UnsupportedCollection
from .._log import (
    check_entry_sizes,
    check_log_dimension,
    chunks_by_bytes,
    entries_to_append,
    entry_fields,
    entry_from_fields,
    fields_bytes,
    write_or_put_back,
)
from .client import WRITE_BATCH, _REQUEST_BYTES
from .layout import Layout, _log_point, _pick_vector, check_name


class QdrantQueryLog:
    """The query-log half of :class:`~connectors.qdrant.store.QdrantStore` (it uses the store's
    connection, layout and name)."""

    def log_exists(self, name: str) -> bool:
        check_name(name, "query log")
        return self.conn.exists(name)

    def _log_layout(self, name: str) -> Layout:
        try:
            return _pick_vector(name, self.conn.vectors_config(name), None)
        except UnsupportedCollection:
            # several named vectors: the one the URI names for the data collection, if the log has it
            wanted = self.config.option("vector")
            if wanted is None:
                raise
            return _pick_vector(name, self.conn.vectors_config(name), wanted)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        batch_size = check_batch_size(batch_size)
        check_name(name, "query log")
        if not self.conn.exists(name):
            raise CollectionNotFound(f"query log {name!r} does not exist in {self.conn.where}")
        lay = self._log_layout(name)
        offset = None
        while True:
            with self.conn.calls("scroll query log", name):
                points, offset = self.conn.client.scroll(name, limit=batch_size, offset=offset,
                                                         with_payload=True, with_vectors=lay.with_vectors)
            for p in points:
                payload = p.payload or {}
                qid = payload.get("query_id")
                if not isinstance(qid, str) or not qid:
                    raise UnsupportedCollection(f"query log {name!r}: point {p.id!r} has no string payload "
                                                "field 'query_id'")
                vec = lay.unwrap(p.vector)
                if vec is None:
                    raise UnsupportedCollection(f"query log {name!r}: entry {qid!r} has no vector")
                yield entry_from_fields(name, qid, float32_rows([vec], lay.dim)[0], payload)
            if offset is None:
                return

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        queries, rows = entries_to_append(queries, name, batch_size, WRITE_BATCH)
        if not queries:
            return 0
        check_name(name, "query log")
        exists = self.conn.exists(name)
        lay = self._log_layout(name) if exists else Layout(None, self._new_log_dimension(queries), "Dot", "float32")
        check_log_dimension(name, queries, lay.dim)
        payloads = [{"query_id": q.query_id, **entry_fields(q, name)} for q in queries]
        sizes = [fields_bytes(p) for p in payloads]
        check_entry_sizes(name, queries, sizes, " (half of a Qdrant server's default request limit, 32 MiB)")
        points = [models.PointStruct(id=_log_point(q.query_id), vector=lay.wrap(q.vector.tolist()), payload=p)
                  for q, p in zip(queries, payloads)]
        before = self._log_points(name, [p.id for p in points]) if exists else []

        def create() -> None:
            with self.conn.calls("create query log", name, write=True):
                self.conn.client.create_collection(
                    name, vectors_config=models.VectorParams(size=lay.dim, distance=models.Distance.DOT))

        def upsert(part: slice) -> Callable[[], None]:
            def write() -> None:
                with self.conn.calls("upsert query log", name, write=True):
                    # our own collection: one point per query, replaced whole on purpose
                    self.conn.client.upsert(name, points=points[part], wait=True)
            return write

        writes = [] if exists else [create]
        writes += [upsert(part) for part in chunks_by_bytes([s + 16 * lay.dim for s in sizes], rows, _REQUEST_BYTES)]
        write_or_put_back(name, writes, lambda: self._put_log_back(name, exists, [p.id for p in points], before))
        return Appended(len(points), len(before))

    def _log_points(self, name: str, point_ids: list[str]) -> list[Any]:
        """The log's points among ``point_ids`` as they are now (payloads and vectors), to put back."""
        found = []
        for start in range(0, len(point_ids), WRITE_BATCH):
            with self.conn.calls("read query log", name):
                found += self.conn.client.retrieve(name, point_ids[start : start + WRITE_BATCH], with_payload=True,
                                                   with_vectors=True)
        return found

    def _put_log_back(self, name: str, existed: bool, written: list[str], before: list[Any]) -> str:
        """Undo an append: drop a log it created, else delete the points it added and rewrite those it
        replaced with what they held."""
        if not existed:
            with self.conn.calls("drop query log", name, write=True):
                self.conn.client.delete_collection(name)
            return "the log this append created was removed"
        kept = {str(p.id) for p in before}
        added = [i for i in written if i not in kept]
        for start in range(0, len(added), WRITE_BATCH):
            with self.conn.calls("delete from query log", name, write=True):
                self.conn.client.delete(name, points_selector=models.PointIdsList(points=added[start : start + WRITE_BATCH]),
                                        wait=True)
        restored = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in before]
        for start in range(0, len(restored), WRITE_BATCH):
            with self.conn.calls("restore query log", name, write=True):
                self.conn.client.upsert(name, points=restored[start : start + WRITE_BATCH], wait=True)
        return f"{len(before)} replaced entries restored, {len(added)} added entries removed"

    def _new_log_dimension(self, queries: list[LabelledQuery]) -> int:
        """A new log takes the data collection's dimension (or the first entry's if there is none)."""
        try:
            return self._layout().dim
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)
