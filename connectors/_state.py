"""The companion collection every database hands out for the sync engine's state
(:class:`StateCollection`), and the checks every backend's state makes before touching its
database: one name rule, one dimension check, the same key, kind and meta rules."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._arrays import as_vectors
from ._errors import InvalidVectors, UnsupportedCollection


@dataclass
class StateRecord:
    """One record of a :class:`StateCollection`: a string key, an optional vector, a JSON-able dict."""

    key: str
    vector: np.ndarray | None
    meta: dict[str, Any]


class StateCollection(ABC):
    """A companion collection holding the sync engine's state, in the same database.

    Records are addressed by ``(kind, key)``; kinds partition the collection (the engine uses
    e.g. "original", "run", "lock"). Vectors, when present, round-trip bit-exactly as float32.
    ``meta`` round-trips through JSON (keys must be strings; values JSON types).
    """

    name: str
    #: The largest ``meta`` (JSON text, UTF-8 bytes) a record can hold; None = no practical limit.
    max_meta_bytes: int | None = None

    def __init__(self, name: str):
        # one name rule for every database, before any call (each database may refuse more)
        self.name = check_state_name(name)

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def dimension(self) -> int:
        """The dimension of the existing collection's vectors (CollectionNotFound if it is absent)."""

    @abstractmethod
    def count(self) -> int:
        """How many records the collection holds, of every kind and of any layout (a collection
        someone else created counts every record in it); CollectionNotFound if it is absent."""

    def create(self, dimension: int) -> None:
        """Create the companion collection if missing (idempotent). An existing one must hold
        vectors of ``dimension`` (UnsupportedCollection names both sides): the same check on
        every database."""
        dimension = check_state_dimension(self.name, dimension)
        if not self.exists():
            self._create(dimension)
            return
        have = self.dimension()
        if have != dimension:
            raise UnsupportedCollection(
                f"state collection {self.name!r} holds {have}-d vectors, but the collection it serves has "
                f"{dimension}-d vectors: it belongs to another collection (pass --state with another name)")
        self._opened()

    @abstractmethod
    def _create(self, dimension: int) -> None:
        """Create the missing collection for ``dimension``-d vectors, storing vectors exactly as sent."""

    def _opened(self) -> None:
        """Make an existing collection ready for reads and writes (Milvus loads it); by default nothing."""

    @abstractmethod
    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        """Insert or replace records by key. Records without a vector store zeros."""

    def put_meta(self, kind: str, records: Sequence[StateRecord]) -> None:
        """Replace the meta of records stored earlier with exactly these vectors (the caller's
        promise: e.g. fingerprints added after the originals were saved). A backend that can
        write metadata alone does so and does not resend the vectors; by default this is
        :meth:`put`."""
        self.put(kind, records)

    @abstractmethod
    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        """Records found among ``keys`` (missing keys are simply absent), any order."""

    @abstractmethod
    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        """Every record of ``kind``, each exactly once, in batches."""

    @abstractmethod
    def delete(self, kind: str, keys: Sequence[str]) -> None:
        """Delete records by key; unknown keys are ignored."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the whole companion collection (no error if missing)."""


# -- checks every StateCollection makes (before touching its database) -----------------------------


#: The most characters a state collection's name may have (Milvus' and Qdrant's limit is 255).
MAX_STATE_NAME = 255


def state_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a state collection, or None: a non-empty str of at most
    MAX_STATE_NAME printable characters, no surrounding blanks, no path separator (Qdrant's local
    mode makes the name a directory) and not ``.`` or ``..``."""
    if not isinstance(name, str):
        return f"must be a str, not {type(name).__name__}"
    if not name:
        return "is empty"
    if name != name.strip():
        return "starts or ends with a blank"
    if len(name) > MAX_STATE_NAME:
        return f"is {len(name)} characters long (at most {MAX_STATE_NAME})"
    if not name.isprintable() or any(c in name for c in "/\\"):
        return "holds a control character or a path separator"
    if name in (".", ".."):
        return "is a path, not a name"
    return None


def check_state_name(name: Any) -> str:
    problem = state_name_problem(name)
    if problem:
        raise InvalidVectors(f"state collection name {name!r} {problem}")
    return name


def check_state_kind(kind: str) -> None:
    """Kinds prefix the stored keys as ``kind:key``, so a kind cannot contain ``:``."""
    if not isinstance(kind, str) or not kind or ":" in kind:
        raise ValueError(f"state kind {kind!r} must be a non-empty str without ':'")


def check_state_dimension(name: str, dimension: Any) -> int:
    if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or dimension < 1:
        raise InvalidVectors(f"state collection {name!r}: dimension must be a positive int, got {dimension!r}")
    return int(dimension)


def check_state_keys(name: str, keys: Sequence[Any]) -> None:
    """Keys of one put: all str, none twice."""
    if any(not isinstance(k, str) for k in keys):
        raise InvalidVectors(f"state {name!r}: keys must be str")
    if len(set(keys)) != len(keys):
        raise InvalidVectors(f"state {name!r}: duplicate key(s) in one put")


def state_meta_json(name: str, record: StateRecord, *, ensure_ascii: bool = True) -> str:
    """A state record's ``meta`` as JSON text (NaN and non-JSON types refused)."""
    try:
        return json.dumps(record.meta, allow_nan=False, sort_keys=True, ensure_ascii=ensure_ascii)
    except (TypeError, ValueError) as exc:
        raise InvalidVectors(f"state {name!r} key {record.key!r}: meta is not JSON-serialisable: {exc}") from None


def state_vector(name: str, record: StateRecord, dimension: int) -> np.ndarray:
    """A state record's vector checked against the collection's dimension; zeros when it has none."""
    if record.vector is None:
        return np.zeros(dimension, np.float32)
    return as_vectors(np.asarray(record.vector).reshape(1, -1), dimension, n=1, what=f"state {name!r} key {record.key!r}")[0]
