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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._base import LabelledQuery
from ._entry import SPLITS, check_entry, labelled_query, query_id_of
from ._errors import InvalidEntry, InvalidVectors, UnsupportedCollection, WriteFailed

__all__ = ["MAX_ENTRY_BYTES", "SPLITS", "check_entry_size", "check_query_id", "chunks_by_bytes", "entry_fields",
           "entry_from_fields", "fields_bytes", "log_entries", "write_or_put_back"]

#: The most bytes one entry's fields (ids, grades, ...) may take as JSON on Qdrant and Chroma: half the
#: smallest request a server accepts by default (Qdrant 32 MiB, ``service.max_request_size_mb``;
#: ``chroma run`` 40 MiB), so an entry always fits in one request with its vector. About two million
#: int ids; Milvus has its own, much lower limit (connectors/milvus.py).
MAX_ENTRY_BYTES = 16 * 1024 * 1024


def check_query_id(qid: Any, log: str) -> str:
    try:
        return query_id_of(qid)
    except InvalidEntry as exc:
        raise InvalidVectors(f"query log {log!r}: {exc}") from None


def log_entries(queries: Iterable[LabelledQuery], log: str) -> list[LabelledQuery]:
    """``queries`` checked by the entry rule, each query id once (InvalidVectors naming the entry)."""
    out: list[LabelledQuery] = []
    seen: set[str] = set()
    dupes: list[str] = []
    for n, q in enumerate(queries):
        try:
            e = check_entry(q)
        except InvalidEntry as exc:
            name = getattr(q, "query_id", None)
            raise InvalidVectors(f"query log {log!r} entry {name!r} (#{n} of this append): {exc}") from None
        if e.query_id in seen:
            dupes.append(e.query_id)
        seen.add(e.query_id)
        out.append(e)
    if dupes:
        raise InvalidVectors(f"query log {log!r}: duplicate query_id(s) in one append: {sorted(set(dupes))[:10]}")
    return out


def entry_fields(q: LabelledQuery, log: str) -> dict[str, Any]:
    """The fields of one (already checked) entry, as stored."""
    return {"relevant_ids": list(q.relevant_ids), "grades": q.grades, "timestamp": q.timestamp, "split": q.split}


def fields_bytes(fields: Mapping[str, Any]) -> int:
    """Size of ``fields`` as compact UTF-8 JSON: what a database stores and a request carries."""
    return len(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def check_entry_size(log: str, q: LabelledQuery, size: int, limit: int = MAX_ENTRY_BYTES, why: str = "") -> None:
    if size > limit:
        raise InvalidVectors(
            f"query log {log!r} entry {q.query_id!r}: its fields take {size:,} bytes as JSON "
            f"({len(q.relevant_ids):,} relevant ids); an entry may take at most {limit:,} bytes{why}")


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
    for write in writes:
        try:
            write()
        except Exception as exc:
            try:
                done = put_back()
            except Exception as undo:
                raise WriteFailed(f"{exc}; putting query log {log!r} back failed as well ({undo}): it may hold part "
                                  "of this append; run the same append again to complete it") from exc
            raise WriteFailed(f"{exc}; query log {log!r} was put back as it was ({done})") from exc


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
