"""The labelled query log kept in a Chroma collection: one record per entry (id = query id), the query
embedding as its vector and the entry's fields as its metadata."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

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
from .client import Connection, LIST_ELEMENTS, LOG_HNSW, _LOG_FIELDS, _PAYLOAD_BUDGET, check_name


class ChromaQueryLog:
    """The query-log half of :class:`~connectors.chroma.store.ChromaStore` (it uses the store's
    connection, scan and dimension)."""

    def log_exists(self, name: str) -> bool:
        return self.conn.collection_exists(name)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        batch_size = check_batch_size(batch_size)
        log = self.conn.get_collection(name)  # CollectionNotFound names the log
        for page in self._scan(log, name, batch_size, ["embeddings", "metadatas"]):
            vecs = float32_rows(page["embeddings"], 0)
            metas = page["metadatas"] or [None] * len(page["ids"])
            for qid, vec, meta in zip(page["ids"], vecs, metas):
                yield _entry_from_record(name, qid, vec, meta or {})

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        queries, rows = entries_to_append(queries, name, batch_size)
        if not queries:
            return 0
        check_name(name)
        log = self.conn.get_collection(name) if self.log_exists(name) else None
        dim = self._log_dimension(log, name, queries)
        check_log_dimension(name, queries, dim)
        ids = [q.query_id for q in queries]
        vecs = np.stack([q.vector for q in queries])
        metas = [_entry_metadata(q, name) for q in queries]
        sizes = [fields_bytes(m) for m in metas]
        check_entry_sizes(name, queries, sizes, " (half of a Chroma server's default request limit, 40 MiB)")
        rows = self.conn.rows_per_write(dim) if rows is None else min(rows, self.conn.max_batch())
        before = _log_records(log, name, ids, self.conn) if log is not None else None
        target: list[Any] = [log]

        def create() -> None:
            with self.conn.calls("create query log", name, write=True):
                target[0] = self.conn.client.get_or_create_collection(
                    name, configuration={"hnsw": dict(LOG_HNSW)}, embedding_function=None,
                    metadata={"nudge_sync_query_log": 1},
                )

        def upsert(part: slice) -> Callable[[], None]:
            def write() -> None:
                with self.conn.calls("upsert query log", name, write=True):
                    target[0].upsert(ids=ids[part], embeddings=vecs[part], metadatas=metas[part])
            return write

        writes = [] if log is not None else [create]
        writes += [upsert(part) for part in chunks_by_bytes([s + 6 * dim for s in sizes], rows, _PAYLOAD_BUDGET)]
        write_or_put_back(name, writes, lambda: self._put_log_back(name, target[0], ids, before))
        return Appended(len(ids), len(before["ids"]) if before is not None else 0)

    def _put_log_back(self, name: str, log: Any, ids: list[str], before: dict[str, Any] | None) -> str:
        """Undo an append: drop a log it created, else delete the records it added and rewrite those it
        replaced with what they held (metadata keys it wrote reset first: Chroma merges metadata)."""
        if before is None:
            with self.conn.calls("drop query log", name, write=True):
                self.conn.client.delete_collection(name)
            return "the log this append created was removed"
        present = set(before["ids"])
        added = [i for i in ids if i not in present]
        step = self.conn.max_batch()
        for start in range(0, len(added), step):
            with self.conn.calls("delete from query log", name, write=True):
                log.delete(ids=added[start : start + step])
        kept = before["ids"]
        metas = [{**dict.fromkeys(_LOG_FIELDS), **(m or {})} for m in before["metadatas"]]
        for start in range(0, len(kept), step):
            part = slice(start, start + step)
            with self.conn.calls("restore query log", name, write=True):
                log.upsert(ids=kept[part], embeddings=before["embeddings"][part], metadatas=metas[part])
        return f"{len(kept)} replaced entries restored, {len(added)} added entries removed"

    def _log_dimension(self, log: Any, name: str, queries: list[LabelledQuery]) -> int:
        """The dimension entries must have: the log's, else the data collection's, else the first's."""
        if log is not None:
            with self.conn.calls("peek query log", name):
                page = log.get(limit=1, include=["embeddings"])
            if page["ids"]:
                return float32_rows(page["embeddings"], 0).shape[1]
        try:
            return self._dim()
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)


# -- query log records -----------------------------------------------------------------------------


def _entry_metadata(q: LabelledQuery, log: str) -> dict[str, Any]:
    """Chroma metadata for one entry. Absent fields are None so an upsert deletes stale keys
    (Chroma merges metadata on upsert). Lists are native while the record's list elements stay
    within :data:`LIST_ELEMENTS`, else JSON text (``relevant_ids_json``, ``grades_json``)."""
    fields = entry_fields(q, log)
    rel, grades = fields["relevant_ids"], fields["grades"] or None
    meta: dict[str, Any] = dict.fromkeys(_LOG_FIELDS)
    if len({type(i) for i in rel}) == 1 and len(rel) + len(grades or ()) <= LIST_ELEMENTS:
        meta.update(relevant_ids=rel, grades=grades)
    else:  # mixed types (Chroma lists hold one type) or a list Chroma cannot index: JSON text
        meta.update(relevant_ids_json=json.dumps(rel), grades_json=None if grades is None else json.dumps(grades))
    meta.update(timestamp=fields["timestamp"], split=fields["split"])
    return meta


def _entry_from_record(log: str, qid: str, vec: np.ndarray, meta: Mapping[str, Any]) -> LabelledQuery:
    fields = dict(meta)
    for key in ("relevant_ids", "grades"):
        text = meta.get(f"{key}_json")
        if text is None:
            continue
        try:
            fields[key] = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            raise UnsupportedCollection(f"query log {log!r}, entry {qid!r}: field '{key}_json' is not "
                                        "JSON text") from None
    return entry_from_fields(log, qid, vec, fields)


def _log_records(log: Any, name: str, ids: list[str], conn: Connection) -> dict[str, Any]:
    """The log's records among ``ids`` as they are now, to put back after a failed append."""
    out: dict[str, Any] = {"ids": [], "embeddings": [], "metadatas": []}
    step = conn.max_batch()
    for start in range(0, len(ids), step):
        with conn.calls("read query log", name):
            got = log.get(ids=ids[start : start + step], include=["embeddings", "metadatas"])
        out["ids"] += list(got["ids"])
        out["embeddings"] += list(float32_rows(got["embeddings"], 0))
        out["metadatas"] += list(got["metadatas"] or [None] * len(got["ids"]))
    return out
