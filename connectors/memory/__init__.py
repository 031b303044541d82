"""In-memory vector database: ``memory://NAME?collection=docs``.

A process-wide registry of named databases (``connectors.memory.database``), so every open of the
same URI in one process sees the same collections, query logs and state; nothing outlives the
process, so a ``nudge-sync`` command cannot reach another process's memory database. It keeps the
same contract as the real backends (tests/contract) and is what fast engine and CLI logic tests
run against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._base import RecordId, as_vectors, check_ids
from .._errors import InvalidVectors
from .._uri import StoreConfig
from .database import MemoryCollection, MemoryDatabase, database, forget
from .store import MemoryStore, stored_form

__all__ = ["MemoryCollection", "MemoryDatabase", "MemoryStore", "create_collection", "database", "forget",
           "open_store"]


def open_store(config: StoreConfig) -> MemoryStore:
    """The store for ``config`` (``location`` is the database name)."""
    return MemoryStore(config.location, config.collection)


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create the collection and load the records (documents go into the payload as ``document``)."""
    ids = check_ids(ids)
    if len(set(ids)) != len(ids):
        raise InvalidVectors(f"duplicate ids in the records for {config.collection!r}")
    kinds = {type(i) for i in ids}
    if len(kinds) > 1:
        raise InvalidVectors(f"collection {config.collection!r}: ids must be all int or all str")
    arr = np.asarray(vectors)
    vecs = as_vectors(arr, arr.shape[-1] if arr.ndim == 2 else 0, n=len(ids))
    rows = [dict(p) for p in payloads] if payloads is not None else [{} for _ in ids]
    if documents is not None:
        for row, doc in zip(rows, documents, strict=True):
            row["document"] = doc
    db = database(config.location)
    db.create_collection(config.collection, vecs.shape[1], metric, "str" if str in kinds else "int")
    db.upsert(config.collection, ids, stored_form(vecs, metric), rows)
