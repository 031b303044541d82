"""The in-memory database behind ``memory://NAME``: its "native client".

A :class:`MemoryDatabase` holds named collections of records (id, float32 vector, payload dict) and
offers the few calls a database client has: create, upsert, update vectors, get, scan in insertion
order, delete, drop. The store (``connectors.memory.store``) programs against these calls exactly as
the Qdrant store programs against ``QdrantClient``; tests build and inspect collections with them.

Databases live in a process-wide registry (:func:`database`), so every open of ``memory://NAME`` in
one process sees the same data, and nothing survives the process. A lock per database makes each
call atomic, as one request to a real server is.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import CollectionNotFound, InvalidVectors, UnsupportedCollection

__all__ = ["MemoryCollection", "MemoryDatabase", "database", "forget"]


@dataclass
class MemoryCollection:
    """One collection: its schema and its records in insertion order."""

    name: str
    dimension: int
    metric: str  #: "cosine" | "dot" | "l2"
    id_type: str  #: "int" | "str": the type every id of the collection has
    #: id -> (vector, payload); dicts keep insertion order, which is the scan order
    records: dict[Any, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    #: facts about the collection itself (e.g. that it is a query log), like a collection's metadata
    metadata: dict[str, Any] = field(default_factory=dict)

    def check_ids(self, ids: Sequence[Any]) -> None:
        """InvalidVectors unless every id has this collection's id type (as a primary key would)."""
        want = int if self.id_type == "int" else str
        bad = [i for i in ids if type(i) is not want]
        if bad:
            raise InvalidVectors(f"collection {self.name!r} has {self.id_type} ids; got {bad[0]!r}")


class MemoryDatabase:
    """A named set of in-memory collections; every method is one atomic call."""

    def __init__(self, name: str):
        self.name = name
        self._collections: dict[str, MemoryCollection] = {}
        self._lock = threading.RLock()

    # -- collections --------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, metric: str, id_type: str,
                          metadata: Mapping[str, Any] | None = None) -> MemoryCollection:
        """A new empty collection; UnsupportedCollection if ``name`` is taken."""
        if metric not in ("cosine", "dot", "l2") or id_type not in ("int", "str") or dimension < 1:
            raise UnsupportedCollection(f"cannot create {name!r}: dimension {dimension}, metric {metric!r}, "
                                        f"id type {id_type!r}")
        with self._lock:
            if name in self._collections:
                raise UnsupportedCollection(f"collection {name!r} already exists in memory database {self.name!r}")
            coll = MemoryCollection(name, int(dimension), metric, id_type, metadata=dict(metadata or {}))
            self._collections[name] = coll
            return coll

    def has_collection(self, name: str) -> bool:
        with self._lock:
            return name in self._collections

    def collection(self, name: str) -> MemoryCollection:
        """The collection ``name`` (its schema; read records through the calls below)."""
        with self._lock:
            try:
                return self._collections[name]
            except KeyError:
                raise CollectionNotFound(f"collection {name!r} does not exist in memory database "
                                         f"{self.name!r}") from None

    def list_collections(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def drop_collection(self, name: str) -> None:
        """Delete ``name`` with its records (no error if missing)."""
        with self._lock:
            self._collections.pop(name, None)

    # -- records ------------------------------------------------------------------------------

    def upsert(self, collection_name: str, ids: Sequence[Any], vectors: np.ndarray,
               payloads: Sequence[Mapping[str, Any]]) -> None:
        """Insert or wholly replace records (vector and payload)."""
        with self._lock:
            coll = self.collection(collection_name)
            coll.check_ids(ids)
            vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), coll.dimension)
            for i, vec, payload in zip(ids, vectors, payloads, strict=True):
                coll.records[i] = (vec.copy(), dict(payload))

    def set_vectors(self, collection_name: str, ids: Sequence[Any], vectors: np.ndarray) -> None:
        """Replace the vectors of existing records, payloads untouched (unknown ids: nothing written)."""
        with self._lock:
            coll = self.collection(collection_name)
            unknown = [i for i in ids if i not in coll.records]
            if unknown:
                raise KeyError(unknown[0])
            for i, vec in zip(ids, vectors, strict=True):
                coll.records[i] = (np.array(vec, dtype=np.float32), coll.records[i][1])

    def set_payloads(self, collection_name: str, ids: Sequence[Any], payloads: Sequence[Mapping[str, Any]]) -> None:
        """Replace the payloads of existing records, vectors untouched (unknown ids are skipped)."""
        with self._lock:
            coll = self.collection(collection_name)
            for i, payload in zip(ids, payloads, strict=True):
                if i in coll.records:
                    coll.records[i] = (coll.records[i][0], dict(payload))

    def get(self, collection_name: str, ids: Sequence[Any]) -> dict[Any, tuple[np.ndarray, dict[str, Any]]]:
        """Copies of the records among ``ids`` that exist."""
        with self._lock:
            records = self.collection(collection_name).records
            return {i: (records[i][0].copy(), _copy(records[i][1])) for i in ids if _hashable(i) and i in records}

    def scan(self, collection_name: str, offset: int, limit: int
             ) -> list[tuple[Any, np.ndarray, dict[str, Any]]]:
        """Up to ``limit`` records from position ``offset`` in insertion order (copies)."""
        with self._lock:
            records = self.collection(collection_name).records
            page = list(records.items())[offset : offset + limit]
            return [(i, vec.copy(), _copy(payload)) for i, (vec, payload) in page]

    def ids(self, collection_name: str) -> list[Any]:
        """Every id, in insertion order."""
        with self._lock:
            return list(self.collection(collection_name).records)

    def matrix(self, collection_name: str) -> tuple[list[Any], np.ndarray]:
        """Every id and vector at once (a copy): what a brute-force search reads."""
        with self._lock:
            coll = self.collection(collection_name)
            if not coll.records:
                return [], np.zeros((0, coll.dimension), np.float32)
            return list(coll.records), np.stack([vec for vec, _ in coll.records.values()])

    def delete(self, collection_name: str, ids: Sequence[Any]) -> None:
        """Delete records by id; unknown ids are ignored."""
        with self._lock:
            records = self.collection(collection_name).records
            for i in ids:
                records.pop(i, None)

    def count(self, collection_name: str) -> int:
        with self._lock:
            return len(self.collection(collection_name).records)


def _hashable(i: Any) -> bool:
    return isinstance(i, (int, str))


def _copy(payload: dict[str, Any]) -> dict[str, Any]:
    # payloads hold JSON-like values: a deep copy keeps callers from editing the stored record
    return copy.deepcopy(payload)


_registry: dict[str, MemoryDatabase] = {}
_registry_lock = threading.Lock()


def database(name: str) -> MemoryDatabase:
    """The process-wide database ``name``, created empty on first use."""
    with _registry_lock:
        db = _registry.get(name)
        if db is None:
            db = _registry[name] = MemoryDatabase(name)
        return db


def forget(name: str) -> None:
    """Discard database ``name`` and everything in it (tests use it to start afresh)."""
    with _registry_lock:
        _registry.pop(name, None)


def databases() -> Iterator[str]:
    """Names of the databases this process holds."""
    with _registry_lock:
        return iter(sorted(_registry))
