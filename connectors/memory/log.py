"""The labelled query log in a memory database: one record per entry, id = query_id (str), the query
embedding as its vector (metric ``dot``: stored as sent) and the entry's fields as its payload.

Appends follow the contract of :meth:`VectorStore.append_log`: the entry rule, the log's dimension,
each query id once and the entry size limit the Qdrant and Chroma logs share are checked before the
first write; a write that fails part-way puts the log back as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .._base import Appended, LabelledQuery, check_batch_size
from .._log import (
    check_entry_sizes,
    check_log_dimension,
    entries_to_append,
    entry_fields,
    entry_from_fields,
    fields_bytes,
    write_or_put_back,
)
from .database import MemoryDatabase

__all__ = ["append_log", "read_log"]

#: Entries one write carries unless the caller asks for fewer.
DEFAULT_WRITE_ROWS = 1000


def read_log(client: MemoryDatabase, name: str, batch_size: int) -> Iterator[LabelledQuery]:
    """Every entry of log ``name``, checked by the entry rule (CollectionNotFound if absent)."""
    batch_size = check_batch_size(batch_size)
    client.collection(name)
    offset = 0
    while page := client.scan(name, offset, batch_size):
        offset += len(page)
        for qid, vec, payload in page:
            yield entry_from_fields(name, str(qid), vec, payload)


def append_log(client: MemoryDatabase, name: str, queries: Sequence[LabelledQuery], data_dimension: int | None,
               batch_size: int | None) -> int:
    """Add or replace entries of log ``name`` (created if missing), all or nothing."""
    entries, rows = entries_to_append(queries, name, batch_size, DEFAULT_WRITE_ROWS)
    if not entries:
        return 0
    exists = client.has_collection(name)
    dim = client.collection(name).dimension if exists else data_dimension or int(entries[0].vector.size)
    check_log_dimension(name, entries, dim)
    payloads = [entry_fields(q, name) for q in entries]
    check_entry_sizes(name, entries, [fields_bytes(p) for p in payloads], " (the limit the Qdrant and Chroma logs have)")
    ids = [q.query_id for q in entries]
    vectors = np.stack([q.vector for q in entries])
    before = client.get(name, ids) if exists else None

    def create() -> None:
        client.create_collection(name, dim, "dot", "str", {"nudge_sync_query_log": 1})

    def upsert(part: slice) -> Callable[[], None]:
        return lambda: client.upsert(name, ids[part], vectors[part], payloads[part])

    writes = [] if exists else [create]
    writes += [upsert(slice(s, s + rows)) for s in range(0, len(ids), rows)]
    write_or_put_back(name, writes, lambda: _put_back(client, name, ids, before))
    return Appended(len(ids), len(before or ()))


def _put_back(client: MemoryDatabase, name: str, ids: list[str], before: dict[str, Any] | None) -> str:
    """Undo an append: drop a log it created, else remove what it added and restore what it replaced."""
    if before is None:
        client.drop_collection(name)
        return "the log this append created was removed"
    added = [i for i in ids if i not in before]
    client.delete(name, added)
    kept = list(before)
    if kept:
        client.upsert(name, kept, np.stack([before[i][0] for i in kept]), [before[i][1] for i in kept])
    return f"{len(kept)} replaced entries restored, {len(added)} added entries removed"
