"""The one small interface the sync engine programs against.

A :class:`VectorStore` is one collection in one database. It can describe itself, stream or
fetch its vectors, overwrite *only* the vectors of existing records, run a kNN search that
skips given ids, read and append a labelled query log kept in a sibling collection, and hand
out a :class:`StateCollection` (a companion collection for the sync engine's bookkeeping).

Conventions shared by every backend (the contract tests in ``tests/contract`` check them):

* Record ids are ``int`` or ``str`` (a Qdrant UUID is its canonical lowercase string).
* Vectors cross the interface as C-contiguous ``float32`` arrays of shape ``(n, dimension)``.
* ``metric`` is one of ``"cosine"``, ``"dot"`` or ``"l2"``. Search scores are similarities,
  higher is better: cosine similarity, inner product, or minus the *squared* L2 distance.
* Writes validate everything first (shape, finiteness, ids exist) and touch nothing on error;
  they wait until the database acknowledges durability/visibility (read-your-writes).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._arrays import as_vectors  # re-exported: the backends validate vectors with it
from ._errors import InvalidVectors, UnsupportedCollection
from ._state import StateCollection, StateRecord  # the state half of the interface, re-exported

RecordId = int | str
Metric = Literal["cosine", "dot", "l2"]
IdType = Literal["int", "str", "uuid"]

METRICS: tuple[str, ...] = ("cosine", "dot", "l2")


@dataclass(frozen=True)
class CollectionInfo:
    """What the sync engine needs to know about a collection before touching it."""

    backend: str  #: "qdrant" | "milvus" | "chroma" | "memory"
    collection: str
    dimension: int
    metric: Metric
    id_type: IdType
    vector_name: str | None  #: Qdrant named vector / Milvus vector field; None = the only one
    count: int
    server_version: str | None = None
    #: Backend-specific facts for reports only (e.g. Milvus write path, primary-key field); code
    #: decides on the typed fields, never on these.
    details: Mapping[str, Any] = field(default_factory=dict)
    #: How far a vector read back may be from the one written, per component, relative to
    #: max(1, its norm): 0 = bit-exact; databases that re-normalise on write hand back a copy a
    #: float32 ulp or so off (Qdrant and Chroma cosine collections).
    round_trip_tolerance: float = 0.0
    #: The database re-normalises what it stores (Qdrant and Chroma cosine collections): a vector
    #: read back is not bit for bit the one written, and writing it again may drift it further.
    #: False = it stores exactly what it is sent (read-back tolerance 0).
    renormalises: bool = False
    #: :meth:`VectorStore.update_vectors_if` writes only records whose version did not move since
    #: :meth:`VectorStore.get_versioned` read them (Qdrant with ``version_field=``).
    conditional_writes: bool = False


@dataclass
class Versioned:
    """Vectors read together with the version of each record (one snapshot), for a conditional write."""

    ids: list[RecordId]
    vectors: np.ndarray
    #: one per id: the application's version value (None when the store has no conditional writes,
    #: or the record has no version yet)
    versions: list[Any]
    missing: list[RecordId]


@dataclass
class LabelledQuery:
    """One entry of the labelled query log: a query embedding and the records users marked relevant."""

    query_id: str
    vector: np.ndarray
    relevant_ids: list[RecordId]
    #: Graded relevance aligned with ``relevant_ids`` (None = all 1).
    grades: list[float] | None = None
    #: Unix seconds (float) when the feedback was recorded; the log watermark is the largest one.
    timestamp: float | None = None
    #: "train", "val" or "test"; None lets the sync engine split by a hash of ``query_id``.
    split: str | None = None


@dataclass
class SearchResult:
    """kNN results for a batch of queries, best first, ties broken by id."""

    ids: list[list[RecordId]]
    #: float64 ``(n_queries, k)``; rows shorter than k are padded with ``-inf``.
    scores: np.ndarray


class Appended(int):
    """What ``append_log`` returns: the entries written (an ``int``, as before), ``replaced`` of them
    in place of an entry the log held for the same query id (the rest were added)."""

    replaced: int

    def __new__(cls, written: int, replaced: int = 0) -> Appended:
        out = super().__new__(cls, written)
        out.replaced = replaced
        return out

    @property
    def added(self) -> int:
        return int(self) - self.replaced


class VectorStore(ABC):
    """One collection of one vector database."""

    @abstractmethod
    def describe(self) -> CollectionInfo:
        """Dimension, metric, id type, vector field, count, server version.

        Raises CollectionNotFound, UnsupportedCollection (e.g. a Milvus auto-id primary key).
        """

    @abstractmethod
    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        """Every (id, vector) of the collection exactly once, in batches of at most ``batch_size``.

        Memory stays bounded by the batch size whatever the collection size.
        """

    @abstractmethod
    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        """Fetch vectors by id.

        Returns ``(found_ids, vectors, missing_ids)``: ``found_ids`` keeps the request order
        (duplicates collapsed), ``vectors[i]`` belongs to ``found_ids[i]``.
        """

    @abstractmethod
    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        """Overwrite the vectors of existing records, nothing else. Returns how many were written.

        Validates first (InvalidVectors for shape/NaN/inf, UnknownIds for absent ids) and writes
        nothing if anything is wrong. Payloads, metadata, documents, scalar fields and other
        named vectors are left byte-identical; ids never change.

        ``verify`` reads the written vectors back and raises WriteFailed if any record is gone or
        holds something else. A caller that reads them back itself anyway (the sync engine does,
        to fingerprint what is stored) passes ``False`` and saves that second read. Checks that
        guard a write path's own risk (Milvus' full-row rewrite re-reading every other field)
        run either way.
        """

    def get_versioned(self, ids: Sequence[RecordId]) -> Versioned:
        """:meth:`get_vectors` plus each record's version, read in the same call (one snapshot).
        Stores without conditional writes return versions of None."""
        found, vectors, missing = self.get_vectors(ids)
        return Versioned(found, vectors, [None] * len(found), missing)

    def update_vectors_if(self, ids: Sequence[RecordId], vectors: np.ndarray, versions: Sequence[Any]) -> int:
        """Write each vector only if its record's version still equals ``versions[i]`` (as read by
        :meth:`get_versioned`); records whose version moved are silently left alone (read them
        back to tell). Validates like :meth:`update_vectors`. Returns how many were sent.
        Only stores whose ``describe().conditional_writes`` is true implement it."""
        raise UnsupportedCollection(f"{type(self).__name__} has no conditional vector write")

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        """Top-``k`` records per query by the collection's metric, never returning an excluded id."""

    # -- labelled query log (a sibling collection of the same database) -----------------------

    @abstractmethod
    def log_exists(self, name: str) -> bool: ...

    @abstractmethod
    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        """Every entry of the query log collection ``name`` (CollectionNotFound if absent)."""

    @abstractmethod
    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        """Add entries to the log collection ``name`` (created if missing); same query_id replaces.

        All or nothing: every entry is checked (the entry rule, the log's dimension, each query id
        once, and the backend's size limits, named in the message) before the first write, and if a
        write still fails part-way the log is put back as it was: entries this append replaced are
        restored, entries it added are removed, a log it created is dropped (WriteFailed says so).
        ``batch_size`` caps the entries per write request (default: the backend's own). Returns the
        entries written as an :class:`Appended` (how many replaced an entry of the log, how many were added)."""

    # -- sync state ---------------------------------------------------------------------------

    @abstractmethod
    def state(self, name: str) -> StateCollection:
        """The companion collection ``name`` (it may not exist yet: see ``StateCollection.create``)."""

    def close(self) -> None:
        """Release client resources. Safe to call twice."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers shared by the backends ---------------------------------------------------------------


#: A full read fetches pages of about this many bytes of float32 vectors, whatever batch size the
#: caller consumes: measured at 100k x 128, pages of 1,000 rows cost 2-2.7x more per vector than
#: pages of 5,000 on Qdrant local mode and Chroma (a fixed cost per call), and larger gain nothing.
READ_PAGE_BYTES = 4 * 1024 * 1024
MAX_READ_PAGE_ROWS = 8192


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as a positive int (numpy integers accepted; bools refused), or ValueError.

    Every backend's reading methods check it before their first database call, so all refuse the
    same values the same way."""
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def read_page_rows(dimension: int, batch_size: int) -> int:
    """Rows per page for reading a whole collection of ``dimension``-d vectors in ``batch_size`` batches."""
    return max(batch_size, min(MAX_READ_PAGE_ROWS, READ_PAGE_BYTES // (4 * max(dimension, 1))))


def check_ids(ids: Sequence[RecordId], what: str = "ids") -> list[RecordId]:
    """Reject anything that is not an int or a str (bools and numpy scalars are converted/refused)."""
    out: list[RecordId] = []
    for i in ids:
        if isinstance(i, bool):
            raise InvalidVectors(f"{what}: {i!r} is a bool, not an id")
        if isinstance(i, (int, np.integer)):
            out.append(int(i))
        elif isinstance(i, str):
            out.append(i)
        else:
            raise InvalidVectors(f"{what}: {i!r} is a {type(i).__name__}; ids are int or str")
    return out


def dedupe(ids: Iterable[RecordId]) -> list[RecordId]:
    """Ids in first-seen order without repeats."""
    return list(dict.fromkeys(ids))


def check_update_ids(ids: Sequence[RecordId], collection: str) -> list[RecordId]:
    """:func:`check_ids` for an update, which also refuses an id given twice (two vectors for one
    record: which one would win is up to the database)."""
    ids = check_ids(ids)
    seen: set[RecordId] = set()
    dupes = [i for i in ids if i in seen or seen.add(i)]
    if dupes:
        raise InvalidVectors(f"duplicate id(s) in update of {collection!r}: {dedupe(dupes)[:10]}")
    return ids


def pad_results(rows: list[list[tuple[RecordId, float]]], k: int) -> SearchResult:
    """Build a SearchResult from per-query (id, score) lists: sort by (-score, id), cut to k, pad."""
    scores = np.full((len(rows), k), -math.inf, dtype=np.float64)
    ids: list[list[RecordId]] = []
    for qi, row in enumerate(rows):
        row = sorted(row, key=lambda p: (-p[1], _id_sort_key(p[0])))[:k]
        ids.append([p[0] for p in row])
        if row:
            scores[qi, : len(row)] = [p[1] for p in row]
    return SearchResult(ids=ids, scores=scores)


def _id_sort_key(i: RecordId) -> tuple[int, Any]:
    # ints before strs so mixed lists still sort deterministically
    return (0, i) if isinstance(i, int) else (1, i)
