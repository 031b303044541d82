"""The labelled query log kept in a Milvus collection: one row per entry (primary key = query id), the
query embedding as its vector and the entry's fields as scalar / JSON fields."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from typing import Any

import numpy as np
import orjson
from pymilvus import DataType

from .._arrays import chunks
from .._base import Appended, LabelledQuery, check_batch_size
from .._errors import CollectionNotFound, UnsupportedCollection, WriteFailed
from .._log import (
    check_log_dimension,
    chunks_by_bytes,
    entries_to_append,
    entry_fields,
    entry_from_fields,
    write_or_put_back,
)
from .log_schema import LogSchema
from .client import STRONG, _ID_CHUNK, _PAGE_BYTES, _ROWS_PER_UPSERT, check_name
from .layout import _rows_per_page, in_expression


class MilvusQueryLog:
    """The query-log half of :class:`~connectors.milvus.store.MilvusStore` (it uses the store's
    connection and layout)."""

    def log_exists(self, name: str) -> bool:
        check_name(name, "query log")
        return self.conn.exists(name)

    def _log_schema(self, name: str) -> LogSchema:
        with self.conn.calls("describe query log", name):
            desc = self.client.describe_collection(name, timeout=self.conn.timeout)
        return LogSchema.from_description(name, desc)

    def _log_layout(self, name: str) -> tuple[str, str, int]:
        """``(primary key, vector field, dimension)`` of a query log collection."""
        schema = self._log_schema(name)
        return schema.pk, schema.vector, schema.dim

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        check_name(name, "query log")
        batch_size = check_batch_size(batch_size)
        if not self.conn.exists(name):
            raise self.conn.not_found(name, "query log")
        pk, vec, dim = self._log_layout(name)
        self.ensure_loaded(name)
        for rows in self.page_rows(name, pk, ["*"], max(batch_size, _rows_per_page(dim)), what="read query log"):
            for row in rows:
                yield _entry_from_row(name, row, pk, vec)

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        queries, step = entries_to_append(queries, name, batch_size, _ROWS_PER_UPSERT)
        if not queries:
            return 0
        check_name(name, "query log")
        exists = self.conn.exists(name)
        schema = self._log_schema(name) if exists else LogSchema.ours(self._new_log_dimension(queries))
        check_log_dimension(name, queries, schema.dim)
        rows = []
        for n, q in enumerate(queries):
            fields = {k: val for k, val in entry_fields(q, name).items() if val is not None}
            row = {**fields, schema.pk: q.query_id, schema.vector: q.vector.tolist()}
            schema.check(name, n, q, row)
            rows.append(row)
        keys = [q.query_id for q in queries]
        before = self._log_rows(name, schema, keys) if exists else []
        sizes = [len(orjson.dumps(row)) for row in rows]

        def upsert(part: slice) -> Callable[[], None]:
            def write() -> None:
                with self.conn.calls("upsert query log", name, write=True):
                    self.client.upsert(name, rows[part], timeout=self.conn.timeout)
            return write

        writes = [] if exists else [lambda: self.create_keyed(name, "query_id", schema.dim, {}, dynamic=True)]
        writes += [upsert(part) for part in chunks_by_bytes(sizes, step, _PAGE_BYTES)]
        write_or_put_back(name, writes, lambda: self._put_log_back(name, schema, exists, keys, before))
        return Appended(len(rows), len(before))

    def _log_rows(self, name: str, schema: LogSchema, keys: list[str]) -> list[dict[str, Any]]:
        """The log's rows among ``keys`` as they are now (every field), to put back after a failed append."""
        self.ensure_loaded(name)
        found: list[dict[str, Any]] = []
        for part in chunks(len(keys), _ID_CHUNK):
            found += self.query_rows(name, in_expression(schema.pk, keys[part]), ["*"], what="read query log")
        return found

    def _put_log_back(self, name: str, schema: LogSchema, existed: bool, keys: list[str],
                      before: list[dict[str, Any]]) -> str:
        """Undo an append: drop a log it created, else delete the rows it added and rewrite those it
        replaced with what they held."""
        if not existed:
            with self.conn.calls("drop query log", name, write=True):
                self.client.drop_collection(name, timeout=self.conn.timeout)
            return "the log this append created was removed"
        kept = {row[schema.pk] for row in before}
        added = [k for k in keys if k not in kept]
        for part in chunks(len(added), _ID_CHUNK):
            with self.conn.calls("delete from query log", name, write=True):
                self.client.delete(name, filter=in_expression(schema.pk, added[part]), timeout=self.conn.timeout)
        for part in chunks(len(before), _ROWS_PER_UPSERT):
            with self.conn.calls("restore query log", name, write=True):
                self.client.upsert(name, before[part], timeout=self.conn.timeout)
        return f"{len(before)} replaced entries restored, {len(added)} added entries removed"

    def _new_log_dimension(self, queries: list[LabelledQuery]) -> int:
        try:
            return self.layout().dim
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)

    def create_keyed(self, name: str, key: str, dim: int, extra: Mapping[str, Any], *, dynamic: bool,
                      description: str = "") -> None:
        """A collection with a VARCHAR key and a FLAT/IP vector ``vector`` (query log, state)."""
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=dynamic, description=description)
        schema.add_field(key, DataType.VARCHAR, is_primary=True, max_length=2048)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for field_name, (dtype, params) in extra.items():
            schema.add_field(field_name, dtype, **params)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        try:
            with self.conn.calls("create collection", name, write=True):
                self.client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG,
                                              timeout=self.conn.timeout)
        except WriteFailed:
            if not self.conn.exists(name):  # else: created concurrently, fine
                raise
        self.ensure_loaded(name)


def _entry_from_row(log: str, row: Mapping[str, Any], pk: str, vec: str) -> LabelledQuery:
    """One log entry from a row: dynamic / scalar fields, or a JSON field ``fields`` holding them."""
    fields = row.get("fields") if isinstance(row.get("fields"), Mapping) else row
    qid = row[pk]
    return entry_from_fields(log, qid if isinstance(qid, str) else str(qid), np.asarray(row[vec], dtype=np.float32),
                             fields)
