"""The Chroma :class:`VectorStore`: describe, read, write (embeddings only) and search one collection."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import chromadb
import numpy as np

from .._arrays import RENORMALISED_TOLERANCE, chunks, float32_rows
from .._base import (
    CollectionInfo,
    RecordId,
    SearchResult,
    VectorStore,
    as_vectors,
    check_batch_size,
    check_ids,
    check_update_ids,
    dedupe,
    pad_results,
    read_page_rows,
)
from .._errors import (
    CollectionNotFound,
    ConnectorError,
    UnknownIds,
    UnsupportedCollection,
    WriteFailed,
)
from .._search import Hits, check_k, search_excluding
from .._uri import StoreConfig
from .client import Connection, SPACE_TO_METRIC, _QUERY_ROWS, check_name
from .layout import _ef_name, _same_vector, _space_of, _to_scores
from .log import ChromaQueryLog
from .pages import scan_pages
from .state import ChromaState



logger = logging.getLogger(__name__)
class ChromaStore(ChromaQueryLog, VectorStore):
    """One Chroma collection (see the module docstring for the write path and its guarantees)."""

    def __init__(self, config: StoreConfig):
        check_name(config.collection)
        self.config = config
        self.name = config.collection
        self._conn: Connection | None = Connection(config)
        self._coll: Any = None
        self._space: str | None = None
        self._dimension: int | None = None

    # Plumbing --------------------------------------------------------------------------------

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise ConnectorError(f"the Chroma store for {self.name!r} is closed")
        return self._conn

    def _collection(self) -> Any:
        if self._coll is None:
            coll = self.conn.get_collection(self.name)
            space, _ = _space_of(coll)
            if space not in SPACE_TO_METRIC:
                raise UnsupportedCollection(
                    f"collection {self.name!r} uses hnsw space {space!r}; supported: {sorted(SPACE_TO_METRIC)}"
                )
            self._coll, self._space = coll, space
        return self._coll

    @contextmanager
    def _calls(self, what: str, *, write: bool = False) -> Iterator[None]:
        try:
            with self.conn.calls(what, self.name, write=write):
                yield
        except CollectionNotFound:
            self._coll = self._dimension = None  # dropped (or re-created with a new id) meanwhile
            raise

    def _dim_or_none(self) -> int | None:
        """The collection's dimension, None while it is empty (Chroma fixes it with the first record)."""
        if self._dimension is None:
            coll = self._collection()
            with self._calls("peek"):
                page = coll.get(limit=1, include=["embeddings"])
            if page["ids"]:
                self._dimension = float32_rows(page["embeddings"], 0).shape[1]
        return self._dimension

    def _dim(self) -> int:
        dim = self._dim_or_none()
        if dim is None:
            raise UnsupportedCollection(
                f"collection {self.name!r} is empty: Chroma fixes a collection's dimension with its first record"
            )
        return dim

    def _scan(self, coll: Any, name: str, batch_size: int, include: list[str],
              where: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        return scan_pages(self.conn, coll, name, batch_size, include, where)

    def _existing(self, coll: Any, ids: list[str], name: str) -> set[str]:
        found: set[str] = set()
        for part in chunks(len(ids), self.conn.max_batch()):
            with self.conn.calls("get (existence check)", name):
                found.update(coll.get(ids=ids[part], include=[])["ids"])
        return found

    # VectorStore -----------------------------------------------------------------------------

    def describe(self) -> CollectionInfo:
        coll = self._collection()
        dim = self._dim()
        space, source = _space_of(coll)
        with self._calls("count"):
            count = int(coll.count())
        with self._calls("get_version"):
            version = str(self.conn.client.get_version())
        details: dict[str, Any] = {
            "space": space,
            "space_from": source,
            "embedding_function": _ef_name(coll),
            "max_batch_size": self.conn.max_batch(),
            "client_version": chromadb.__version__,
            # cosine collections hand back a renormalised copy (~1 float32 ulp of the norm off)
            "vectors_round_trip": "exact" if space != "cosine" else "within 1e-6 x norm",
            "write_path": "collection.update(ids, embeddings) only; existence checked first, read back after",
            "tenant": self.conn.tenant,
            "database": self.conn.database,
        }
        hnsw = (getattr(coll, "configuration_json", None) or {}).get("hnsw")
        if isinstance(hnsw, Mapping):
            details["hnsw"] = dict(hnsw)
        return CollectionInfo(
            backend="chroma", collection=self.name, dimension=dim, metric=SPACE_TO_METRIC[space], id_type="str",
            vector_name=None, count=count, server_version=version, details=details,
            round_trip_tolerance=0.0 if space != "cosine" else RENORMALISED_TOLERANCE, renormalises=space == "cosine",
        )

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        coll = self._collection()
        batch_size = check_batch_size(batch_size)
        rows = min(self.conn.max_batch(), read_page_rows(self._dim_or_none() or 1, batch_size))
        for page in self._scan(coll, self.name, max(rows, batch_size), ["embeddings"]):
            ids, vecs = list(page["ids"]), float32_rows(page["embeddings"], 0)
            for start in range(0, len(ids), batch_size):
                yield ids[start : start + batch_size], vecs[start : start + batch_size]

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        coll = self._collection()
        dim = self._dim_or_none() or 0  # an empty collection finds nothing
        wanted = dedupe(check_ids(ids))
        keys = [i for i in wanted if isinstance(i, str)]  # an int id cannot exist in Chroma
        got: dict[str, np.ndarray] = {}
        for part in chunks(len(keys), self.conn.max_batch()):
            with self._calls("get"):
                page = coll.get(ids=keys[part], include=["embeddings"])  # storage order, unknown dropped
            got.update(zip(page["ids"], float32_rows(page["embeddings"], dim)))
        found = [i for i in wanted if isinstance(i, str) and i in got]
        missing = [i for i in wanted if not (isinstance(i, str) and i in got)]
        vectors = np.stack([got[i] for i in found]) if found else np.zeros((0, dim), dtype=np.float32)
        return found, vectors, missing

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        coll = self._collection()
        ids = check_update_ids(ids, self.name)
        dim = self._dim_or_none()
        if dim is None:  # empty collection: no id can exist
            if ids:
                raise UnknownIds(self.name, ids)
            return 0
        vecs = as_vectors(vectors, dim, n=len(ids))
        if not ids:
            return 0
        keys = [i for i in ids if isinstance(i, str)]
        found = self._existing(coll, keys, self.name)
        unknown = [i for i in ids if not (isinstance(i, str) and i in found)]
        if unknown:
            raise UnknownIds(self.name, unknown)
        for part in chunks(len(keys), self.conn.rows_per_write(dim)):
            chunk_ids, chunk_vecs = keys[part], vecs[part]
            with self._calls("update", write=True):
                # ids + embeddings ONLY: documents/metadatas would re-embed or overwrite (docstring).
                coll.update(ids=chunk_ids, embeddings=chunk_vecs)
            if verify:
                self._verify(coll, chunk_ids, chunk_vecs, dim)
        logger.info("%r: %d vector(s) written%s", self.name, len(keys), " and read back" if verify else "")
        return len(keys)

    def _verify(self, coll: Any, ids: list[str], vecs: np.ndarray, dim: int) -> None:
        """Read the chunk back: Chroma ignores vanished ids silently, we do not.

        ip/l2 collections return exactly what was written. Cosine collections return a copy that
        differs by about one float32 ulp of the row's norm (and is not a fixed point: writing it
        back drifts again), so there the check allows 1e-6 x the row norm.
        """
        with self._calls("get (read-back)", write=True):
            page = coll.get(ids=ids, include=["embeddings"])
        got = dict(zip(page["ids"], float32_rows(page["embeddings"], dim)))
        exact = self._space != "cosine"
        bad = [i for i, v in zip(ids, vecs) if i not in got or not _same_vector(got[i], v, exact)]
        if bad:
            raise WriteFailed(
                f"{len(bad)} record(s) of {self.name!r} do not hold the written vector after update "
                f"(deleted or changed concurrently?): {bad[:10]}"
            )

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        coll = self._collection()
        dim = self._dim_or_none()
        raw = np.asarray(queries)
        qs = as_vectors(raw, dim if dim is not None else (raw.shape[-1] if raw.ndim else 0), what="queries")
        k = check_k(k)
        excluded = {i for i in exclude if isinstance(i, str)}  # ints cannot be Chroma ids
        with self._calls("count"):
            count = int(coll.count())
        if k == 0 or count == 0 or len(qs) == 0:
            return pad_results([[] for _ in range(len(qs))], k)
        # Chroma has no id filter for a query: over-fetch; k + every excluded id keeps k survivors.
        rows = search_excluding(len(qs), k, excluded, lambda todo, n, _: self._query(coll, qs[todo], n),
                                ceiling=min(count, k + len(excluded)), first_extra=32, growth=4)
        return pad_results(rows, k)

    def _query(self, coll: Any, qs: np.ndarray, n: int) -> list[Hits]:
        out: list[Hits] = []
        per_call = max(1, min(self.conn.max_batch(), _QUERY_ROWS // n))
        space = self._space or "l2"
        for part in chunks(len(qs), per_call):
            with self._calls("query"):
                res = coll.query(query_embeddings=qs[part], n_results=n, include=["distances"])
            for hit_ids, dists in zip(res["ids"], res["distances"]):
                out.append(list(zip(hit_ids, _to_scores(dists, space))))
        return out

    # State -----------------------------------------------------------------------------------

    def state(self, name: str) -> ChromaState:
        check_name(name)
        return ChromaState(lambda: self.conn, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._coll = None
        if conn is not None:
            conn.close()
