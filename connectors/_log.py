"""Query log entries as plain fields, shared by the backends that store the log in a collection.

Every backend keeps one record per labelled query: the query embedding as the record's vector and
the fields below as payload / metadata / scalar fields:

    query_id      str      (Qdrant keeps it in the payload: its point ids are ints or UUIDs)
    relevant_ids  list of int or str ids of the relevant records
    grades        list of float aligned with relevant_ids, or absent (all 1)
    timestamp     float unix seconds, or absent
    split         "train" | "val" | "test", or absent (the engine splits by a hash of query_id)

Entries are checked by the entry rule (``_entry.py``) both ways: before they are appended, and
when they are read back (a log written with the database's own client gets the same rule).
Appends are all or nothing (:func:`write_or_put_back`): every entry is checked against the rule
and the backend's limits before the first write, and a write that still fails part-way puts the
log back as it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._base import LabelledQuery, check_batch_size
from ._entry import SPLITS, check_entry, labelled_query, short_repr
from ._errors import InvalidEntry, UnsupportedCollection, WriteFailed

__all__ = ["MAX_ENTRY_BYTES", "SPLITS", "check_entry_sizes", "check_log_dimension", "chunks_by_bytes",
           "entries_to_append", "entry_fields", "entry_from_fields", "fields_bytes", "log_entries",
           "write_or_put_back"]

logger = logging.getLogger(__name__)

#: The most bytes one entry's fields (ids, grades, ...) may take as JSON on Qdrant and Chroma: half the
#: smallest request a server accepts by default (Qdrant 32 MiB, ``service.max_request_size_mb``;
#: ``chroma run`` 40 MiB), so an entry always fits in one request with its vector. About two million
#: int ids; Milvus has its own, much lower limit (connectors/milvus/log_schema.py).
MAX_ENTRY_BYTES = 16 * 1024 * 1024


def log_entries(queries: Iterable[LabelledQuery], log: str) -> list[LabelledQuery]:
    """``queries`` checked by the entry rule, each query id once (InvalidEntry naming the entry)."""
    out: list[LabelledQuery] = []
    first: dict[str, int] = {}
    for n, q in enumerate(queries):
        try:
            e = check_entry(q)
        except InvalidEntry as exc:
            name = short_repr(getattr(q, "query_id", None))
            raise InvalidEntry(f"query log {log!r} entry {name}: {exc}", exc.field, n) from None
        if first.setdefault(e.query_id, n) != n:
            raise InvalidEntry(f"query log {log!r}: query_id {short_repr(e.query_id)} is given twice in one append "
                               f"(#{first[e.query_id]} and #{n})", "query_id", n)
        out.append(e)
    return out


def entries_to_append(queries: Iterable[LabelledQuery], log: str, batch_size: int | None,
                      default_rows: int | None = None) -> tuple[list[LabelledQuery], int | None]:
    """The checks every ``append_log`` makes before it looks at its database: the entries by the rule
    (:func:`log_entries`) and the rows per write, ``batch_size`` (checked) or else ``default_rows``
    (None: the backend works its default out later). An empty append checks nothing more."""
    entries = log_entries(queries, log)
    if not entries:
        return [], None
    rows = default_rows if batch_size is None else batch_size
    return entries, None if rows is None else check_batch_size(rows)


def check_log_dimension(log: str, queries: Sequence[LabelledQuery], dimension: int) -> None:
    """InvalidEntry naming the first entry whose vector is not ``dimension``-d (the log's)."""
    for n, q in enumerate(queries):
        if q.vector.size != dimension:
            raise InvalidEntry(f"query log {log!r} entry {short_repr(q.query_id)}: dimension {q.vector.size} does not "
                               f"match the log's dimension {dimension}", "vector", n)


def entry_fields(q: LabelledQuery, log: str) -> dict[str, Any]:
    """The fields of one (already checked) entry, as stored."""
    return {"relevant_ids": list(q.relevant_ids), "grades": q.grades, "timestamp": q.timestamp, "split": q.split}


def fields_bytes(fields: Mapping[str, Any]) -> int:
    """Size of ``fields`` as compact UTF-8 JSON: what a database stores and a request carries."""
    return len(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def check_entry_sizes(log: str, queries: Sequence[LabelledQuery], sizes: Sequence[int], why: str,
                      limit: int = MAX_ENTRY_BYTES) -> None:
    """InvalidEntry naming the first entry whose stored fields take more than ``limit`` bytes."""
    for n, (q, size) in enumerate(zip(queries, sizes)):
        if size > limit:
            raise InvalidEntry(f"query log {log!r} entry {short_repr(q.query_id)}: its fields take {size:,} bytes as "
                               f"JSON ({len(q.relevant_ids):,} relevant ids); an entry may take at most {limit:,} "
                               f"bytes{why}", "relevant_ids", n)


def entry_from_fields(log: str, qid: str, vector: np.ndarray, fields: Mapping[str, Any]) -> LabelledQuery:
    """An entry read back from a log collection, checked by the entry rule (UnsupportedCollection
    naming the entry otherwise). A single id or grade written by hand as a plain value is a list of one."""
    raw: Any = fields.get("relevant_ids")
    if raw is None:
        raw = []
    elif isinstance(raw, (str, int)) and not isinstance(raw, bool):
        raw = [raw]
    grades = fields.get("grades")
    if isinstance(grades, (int, float)) and not isinstance(grades, bool):
        grades = [grades]
    try:
        return labelled_query(qid, vector, raw, grades, fields.get("timestamp"), fields.get("split"))
    except InvalidEntry as exc:
        raise UnsupportedCollection(f"query log {log!r}, entry {qid!r}: {exc}") from None


def write_or_put_back(log: str, writes: Sequence[Callable[[], None]], put_back: Callable[[], str]) -> None:
    """Run ``writes`` in order; if one fails, call ``put_back`` (which restores the log as it was before
    the first write and says what it did) and raise WriteFailed saying whether that worked."""
    for n, write in enumerate(writes, 1):
        try:
            write()
        except Exception as exc:
            logger.info("query log %r: write %d of %d failed (%s); putting the log back", log, n, len(writes), exc)
            try:
                done = put_back()
            except Exception as undo:
                raise WriteFailed(f"{exc}; putting query log {log!r} back failed as well ({undo}): it may hold part "
                                  "of this append; run the same append again to complete it") from exc
            raise WriteFailed(f"{exc}; query log {log!r} was put back as it was ({done})") from exc
    logger.info("query log %r: appended in %d write(s)", log, len(writes))


def chunks_by_bytes(sizes: Sequence[int], max_rows: int, max_bytes: int) -> list[slice]:
    """Consecutive slices of at most ``max_rows`` items whose ``sizes`` add up to at most ``max_bytes``
    (an item larger than that on its own gets a slice of its own)."""
    out: list[slice] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_rows or total + size > max_bytes):
            out.append(slice(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append(slice(start, len(sizes)))
    return out
