"""A :class:`VectorStore` over one collection of a memory database (``memory://NAME?collection=C``).

It keeps the contract every real backend keeps (tests/contract runs it as the ``memory`` harness):
ids int or str (one type per collection), writes validated before anything is touched, unknown ids
refused, vectors only ever replaced, excluded ids never returned. Search is exact (brute force).

Cosine collections behave like Chroma's: a written vector is kept as its unit direction times its
norm, which can come back about one float32 ulp of the norm off (``renormalises``, tolerance 1e-6),
so engine tests on this store exercise the paths the re-normalising databases need.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .._arrays import RENORMALISED_TOLERANCE
from .._base import (
    CollectionInfo,
    LabelledQuery,
    RecordId,
    SearchResult,
    VectorStore,
    as_vectors,
    check_batch_size,
    check_ids,
    check_update_ids,
    dedupe,
    pad_results,
)
from .._errors import ConnectorError, InvalidURI, UnknownIds, WriteFailed
from .._search import check_k
from .database import MemoryDatabase, database
from .log import append_log, read_log
from .state import MemoryState

__all__ = ["MemoryStore", "stored_form"]

logger = logging.getLogger(__name__)


def stored_form(vectors: np.ndarray, metric: str) -> np.ndarray:
    """What the database keeps of ``vectors``: as sent, or for cosine what Chroma gives back, bit for
    bit (measured on Chroma 1.5.9, dimensions 3 to 768): the norm is the square root of a float32 sum
    of squares taken element by element in order (``cumsum``, not numpy's pairwise ``sum``), the
    vector is multiplied by its float32 reciprocal and then by the norm again."""
    if metric != "cosine":
        return vectors
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.cumsum(vectors * vectors, axis=1, dtype=np.float32)[:, -1:]).astype(np.float32)
    safe = np.where(norms > 0, norms, np.float32(1))  # a zero vector stays as it is
    inverse = (np.float32(1) / safe).astype(np.float32)
    return ((vectors * inverse).astype(np.float32) * safe).astype(np.float32)


class MemoryStore(VectorStore):
    """One collection of the process-wide memory database ``database_name``."""

    def __init__(self, database_name: str, collection: str):
        if not isinstance(collection, str) or not collection:
            raise InvalidURI(f"collection name {collection!r} must be a non-empty string")
        self.name = collection
        self._client: MemoryDatabase | None = database(database_name)

    @property
    def client(self) -> MemoryDatabase:
        """The memory database (the store's "native client")."""
        if self._client is None:
            raise ConnectorError(f"the memory store for {self.name!r} is closed")
        return self._client

    def describe(self) -> CollectionInfo:
        coll = self.client.collection(self.name)
        cosine = coll.metric == "cosine"
        return CollectionInfo(
            backend="memory", collection=self.name, dimension=coll.dimension, metric=coll.metric,  # type: ignore[arg-type]
            id_type=coll.id_type, vector_name=None, count=self.client.count(self.name),  # type: ignore[arg-type]
            server_version=None, details={"database": self.client.name, "search": "exact (brute force)"},
            round_trip_tolerance=RENORMALISED_TOLERANCE if cosine else 0.0, renormalises=cosine,
        )

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        batch_size = check_batch_size(batch_size)
        self.client.collection(self.name)  # CollectionNotFound before the first batch
        offset = 0
        while page := self.client.scan(self.name, offset, batch_size):
            offset += len(page)
            yield [i for i, _, _ in page], np.stack([vec for _, vec, _ in page])

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        dim = self.client.collection(self.name).dimension
        wanted = dedupe(check_ids(ids))
        got = self.client.get(self.name, wanted)
        found = [i for i in wanted if i in got]
        vectors = np.stack([got[i][0] for i in found]) if found else np.zeros((0, dim), np.float32)
        return found, vectors, [i for i in wanted if i not in got]

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        coll = self.client.collection(self.name)
        ids = check_update_ids(ids, self.name)
        vecs = as_vectors(vectors, coll.dimension, n=len(ids))
        if not ids:
            return 0
        present = self.client.get(self.name, ids)
        unknown = [i for i in ids if i not in present]
        if unknown:
            raise UnknownIds(self.name, unknown)
        self.client.set_vectors(self.name, ids, stored_form(vecs, coll.metric))
        if verify:
            self._verify(ids, vecs, RENORMALISED_TOLERANCE if coll.metric == "cosine" else 0.0)
        logger.info("%r: %d vector(s) written%s", self.name, len(ids), " and read back" if verify else "")
        return len(ids)

    def _verify(self, ids: list[RecordId], sent: np.ndarray, tolerance: float) -> None:
        """Read the written records back: a record deleted or changed meanwhile is a failed write."""
        got = self.client.get(self.name, ids)
        bad = [i for i, want in zip(ids, sent) if i not in got or not _within(got[i][0], want, tolerance)]
        if bad:
            raise WriteFailed(f"{len(bad)} record(s) of {self.name!r} do not hold the written vector after update "
                              f"(deleted or changed concurrently?): {bad[:10]}")

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        coll = self.client.collection(self.name)
        qs = as_vectors(queries, coll.dimension, what="queries")
        k = check_k(k)
        excluded = set(exclude)
        ids, matrix = self.client.matrix(self.name)
        keep = [j for j, i in enumerate(ids) if i not in excluded]
        if k == 0 or not keep or len(qs) == 0:
            return pad_results([[] for _ in range(len(qs))], k)
        scores = _similarities(qs.astype(np.float64), matrix[keep].astype(np.float64), coll.metric)
        rows = [[(ids[keep[j]], float(row[j])) for j in _best(row, k)] for row in scores]
        return pad_results(rows, k)

    def log_exists(self, name: str) -> bool:
        return self.client.has_collection(name)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        return read_log(self.client, name, batch_size)

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        data_dim = self.client.collection(self.name).dimension if self.client.has_collection(self.name) else None
        return append_log(self.client, name, queries, data_dim, batch_size)

    def state(self, name: str) -> MemoryState:
        if not isinstance(name, str) or not name:
            raise InvalidURI(f"state collection name {name!r} must be a non-empty string")
        return MemoryState(self.client, name)

    def close(self) -> None:
        self._client = None


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores and of every score tied with the k-th (ties are then broken by id)."""
    if scores.size <= k:
        return np.arange(scores.size)
    kth = np.partition(-scores, k - 1)[k - 1]
    return np.flatnonzero(-scores <= kth)


def _within(got: np.ndarray, want: np.ndarray, tolerance: float) -> bool:
    if tolerance == 0.0:
        return got.tobytes() == want.tobytes()
    bound = tolerance * max(1.0, float(np.linalg.norm(want)))
    return bool(np.max(np.abs(got.astype(np.float64) - want), initial=0.0) <= bound)


def _similarities(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """The contract's scores, higher is better: cosine similarity, inner product, minus squared L2."""
    if metric == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        return queries @ vectors.T
    if metric == "dot":
        return queries @ vectors.T
    return -(np.sum(queries**2, axis=1)[:, None] - 2 * queries @ vectors.T + np.sum(vectors**2, axis=1)[None, :])
