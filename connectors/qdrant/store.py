"""The Qdrant :class:`VectorStore`: describe, read, write (vectors only) and search one collection."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from .._arrays import RENORMALISED_TOLERANCE, float32_rows
from .._base import (
    CollectionInfo,
    RecordId,
    SearchResult,
    VectorStore,
    Versioned,
    as_vectors,
    check_batch_size,
    check_ids,
    check_update_ids,
    dedupe,
    pad_results,
    read_page_rows,
)
from .._errors import (
    ConnectorError,
    InvalidURI,
    InvalidVectors,
    UnknownIds,
    UnsupportedCollection,
    WriteFailed,
)
from .._search import Hits, check_k, search_excluding
from .._uri import StoreConfig
from .client import (
    Connection,
    DISTANCE_TO_METRIC,
    QUERY_BATCH,
    READ_BATCH,
    WRITE_BATCH,
    _CLIENT_VERSION,
    _FILTER_IDS_PER_CALL,
)
from .layout import (
    Layout,
    _impossible,
    _key,
    _pick_vector,
    _point_id,
    _version_filters,
    _version_of,
    check_name,
)
from .log import QdrantQueryLog
from .state import QdrantState



logger = logging.getLogger(__name__)
class QdrantStore(QdrantQueryLog, VectorStore):
    """One Qdrant collection (see the module docstring for the write path and its checks)."""

    def __init__(self, config: StoreConfig):
        self.config = config
        self.name = config.collection
        self._conn: Connection | None = Connection(config)
        self._layout_cache: Layout | None = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise ConnectorError("the Qdrant store is closed")
        return self._conn

    def _calls(self, what: str, *, write: bool = False):
        return self.conn.calls(what, self.name, write=write)

    def _layout(self) -> Layout:
        if self._layout_cache is None:
            self._layout_cache = _pick_vector(self.name, self.conn.vectors_config(self.name),
                                              self.config.option("vector"))
        return self._layout_cache

    def describe(self) -> CollectionInfo:
        lay = self._layout()
        with self._calls("count"):
            count = int(self.conn.client.count(self.name, exact=True).count)
        with self._calls("scroll"):
            first, _ = self.conn.client.scroll(self.name, limit=1, with_payload=False, with_vectors=False)
        id_type = "uuid" if first and isinstance(first[0].id, str) else "int"
        round_trip, tolerance = "bit-exact", 0.0
        if lay.distance == "Cosine":
            round_trip, tolerance = "normalised by Qdrant in float32 (compared within 1e-6)", RENORMALISED_TOLERANCE
        if lay.datatype == "float16":
            round_trip, tolerance = round_trip + "; stored as float16", 1e-3
        return CollectionInfo(
            backend="qdrant", collection=self.name, dimension=lay.dim, metric=DISTANCE_TO_METRIC[lay.distance],
            id_type=id_type, vector_name=lay.name, count=count, server_version=self.conn.server_version(),
            details={
                "distance": lay.distance, "datatype": lay.datatype, "mode": self.config.transport,
                "client_version": _CLIENT_VERSION,
                "write_path": "update_vectors(wait=True) only; existence checked first, read back after",
                "vectors_round_trip": round_trip,
                "exclusion_search": "over-fetch (local mode)" if self.conn.is_local else "must_not has_id filter",
                "version_field": self._version_field(),
            },
            round_trip_tolerance=tolerance, renormalises=lay.distance == "Cosine",
            conditional_writes=self._version_field() is not None,
        )

    # Reading ---------------------------------------------------------------------------------

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        batch_size = check_batch_size(batch_size)
        lay = self._layout()
        page, offset = read_page_rows(lay.dim, batch_size), None
        while True:
            with self._calls("scroll"):
                points, offset = self.conn.client.scroll(self.name, limit=page, offset=offset,
                                                         with_payload=False, with_vectors=lay.with_vectors)
            if points:
                ids, vecs = [p.id for p in points], self._vectors_of(points, lay)
                for start in range(0, len(ids), batch_size):
                    yield ids[start : start + batch_size], vecs[start : start + batch_size]
            if offset is None:
                return

    def _vectors_of(self, points: Sequence[Any], lay: Layout) -> np.ndarray:
        rows = [lay.unwrap(p.vector) for p in points]
        absent = [p.id for p, r in zip(points, rows) if r is None]
        if absent:  # a named vector is optional per point in Qdrant
            raise UnsupportedCollection(f"{len(absent)} point(s) of {self.name!r} have no vector "
                                        f"{lay.name or '(unnamed)'!r}: {absent[:10]}")
        return float32_rows(rows, lay.dim)

    def _retrieve(self, keys: Sequence[int | str], lay: Layout | None) -> dict[int | str, Any]:
        """Points by canonical id: their vector (``lay`` given) or True (existence only)."""
        out: dict[int | str, Any] = {}
        for start in range(0, len(keys), READ_BATCH):
            chunk = list(keys[start : start + READ_BATCH])
            with self._calls("retrieve"):
                points = self.conn.client.retrieve(self.name, ids=chunk, with_payload=False,
                                                   with_vectors=lay.with_vectors if lay else False)
            for p in points:
                out[_key(p.id)] = lay.unwrap(p.vector) if lay else True
        return out

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        lay = self._layout()
        ids = check_ids(ids)
        wanted = {i: _point_id(i) for i in ids}
        got = self._retrieve(dedupe(k for k in wanted.values() if k is not None), lay)
        found = [i for i in dedupe(ids) if wanted[i] is not None and got.get(wanted[i]) is not None]
        missing = [i for i in ids if wanted[i] is None or got.get(wanted[i]) is None]
        return found, float32_rows([got[wanted[i]] for i in found], lay.dim), missing

    def _version_field(self) -> str | None:
        field = self.config.option("version_field")
        if field is not None and not field.strip():
            raise InvalidURI("option version_field= needs the name of a payload field")
        return field

    def get_versioned(self, ids: Sequence[RecordId]) -> Versioned:
        """Vectors and the ``version_field`` of each point, from one ``retrieve`` per chunk."""
        field = self._version_field()
        if field is None:
            return super().get_versioned(ids)
        lay = self._layout()
        ids = check_ids(ids)
        wanted = {i: _point_id(i) for i in ids}
        keys = dedupe(k for k in wanted.values() if k is not None)
        got: dict[int | str, tuple[Any, Any]] = {}
        for start in range(0, len(keys), READ_BATCH):
            with self._calls("retrieve vectors and versions"):
                points = self.conn.client.retrieve(self.name, ids=list(keys[start : start + READ_BATCH]),
                                                   with_payload=[field], with_vectors=lay.with_vectors)
            for p in points:
                got[_key(p.id)] = (lay.unwrap(p.vector), _version_of(p.payload, field, self.name, p.id))
        found = [i for i in dedupe(ids) if wanted[i] is not None and got.get(wanted[i], (None,))[0] is not None]
        missing = [i for i in ids if i not in set(found)]
        return Versioned(found, float32_rows([got[wanted[i]][0] for i in found], lay.dim),
                         [got[wanted[i]][1] for i in found], missing)

    def update_vectors_if(self, ids: Sequence[RecordId], vectors: np.ndarray, versions: Sequence[Any]) -> int:
        field = self._version_field()
        if field is None:
            return super().update_vectors_if(ids, vectors, versions)
        lay, keys, vecs = self._checked_update(ids, vectors)
        versions = list(versions)
        if len(versions) != len(keys):
            raise InvalidVectors(f"conditional update of {self.name!r}: {len(versions)} versions for {len(keys)} ids")
        for start in range(0, len(keys), WRITE_BATCH):
            part = range(start, min(len(keys), start + WRITE_BATCH))
            for positions, flt in _version_filters(field, [keys[j] for j in part], versions[start : part.stop]):
                points = [models.PointVectors(id=keys[start + j], vector=lay.wrap(vecs[start + j].tolist()))
                          for j in positions]
                with self._calls("update_vectors (conditional)", write=True):
                    self.conn.client.update_vectors(self.name, points=points, update_filter=flt, wait=True)
        logger.info("%r: %d vector(s) sent on condition of their version", self.name, len(keys))
        return len(keys)

    # Writing ---------------------------------------------------------------------------------

    def _checked_update(self, ids: Sequence[RecordId], vectors: np.ndarray) -> tuple[Layout, list[Any], np.ndarray]:
        """Validate an update (shape, values, ids Qdrant can hold, no duplicates, every point
        present) before anything is written: ``(layout, point keys, float32 vectors)``."""
        lay = self._layout()
        ids = check_update_ids(ids, self.name)
        vecs = as_vectors(vectors, lay.dim, n=len(ids))
        if not ids:
            return lay, [], vecs
        keys = [_point_id(i) for i in ids]
        impossible = [i for i, k in zip(ids, keys) if k is None]
        if impossible:
            raise InvalidVectors(f"update of {self.name!r}: {_impossible(impossible)}")
        if len(set(keys)) != len(keys):  # two spellings of one UUID
            raise InvalidVectors(f"duplicate id(s) in update of {self.name!r} (one UUID spelled twice)")
        present = self._retrieve(keys, None)
        unknown = [i for i, k in zip(ids, keys) if k not in present]
        if unknown:
            raise UnknownIds(self.name, unknown)
        return lay, keys, vecs

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        lay, keys, vecs = self._checked_update(ids, vectors)
        for start in range(0, len(keys), WRITE_BATCH):
            part = slice(start, start + WRITE_BATCH)
            points = [models.PointVectors(id=k, vector=lay.wrap(v.tolist())) for k, v in zip(keys[part], vecs[part])]
            with self._calls("update_vectors", write=True):
                # vector only, acknowledged when applied: never upsert (it would wipe the payload)
                self.conn.client.update_vectors(self.name, points=points, wait=True)
            if verify:
                self._verify(keys[part], vecs[part], lay)
        logger.info("%r: %d vector(s) written%s", self.name, len(keys), " and read back" if verify else "")
        return len(keys)

    def _verify(self, keys: list[Any], sent: np.ndarray, lay: Layout) -> None:
        """Read the batch back: exact for Dot/Euclid, within 1e-6 of our normalisation for Cosine."""
        got = self._retrieve(keys, lay)
        vanished = [k for k in keys if got.get(k) is None]
        if vanished:
            raise WriteFailed(f"{len(vanished)} record(s) of {self.name!r} vanished during the update "
                              f"(deleted concurrently?): {vanished[:10]}")
        back = float32_rows([got[k] for k in keys], lay.dim)
        want, tol = lay.expected(sent)
        diff = np.abs(back.astype(np.float64) - want.astype(np.float64)).max(axis=1)
        bad = [k for k, d in zip(keys, diff) if not d <= tol]
        if bad:
            raise WriteFailed(f"{len(bad)} record(s) of {self.name!r} do not hold the written vector after "
                              f"update (changed concurrently?), largest difference {float(diff.max()):.3g}: {bad[:10]}")

    # Search ----------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        lay = self._layout()
        qs = as_vectors(queries, lay.dim, what="queries")
        k = check_k(k)
        # ids Qdrant cannot hold cannot be returned either: nothing to exclude for them
        excluded = dedupe(p for p in (_point_id(i) for i in check_ids(list(exclude))) if p is not None)
        if k == 0 or len(qs) == 0:
            return pad_results([[] for _ in qs], k)
        if self.conn.is_local and excluded:
            rows = self._search_overfetch(qs, k, set(excluded), lay)
        else:
            rows = self._search_filtered(qs, k, excluded, lay)
        return pad_results(rows, k)

    def _score(self, score: float, lay: Layout) -> float:
        return -(float(score) ** 2) if lay.distance == "Euclid" else float(score)

    def _query(self, qs: np.ndarray, limit: int, lay: Layout, flt: Any, per_call: int) -> list[Hits]:
        requests = [models.QueryRequest(query=q.tolist(), using=lay.name, limit=limit, filter=flt,
                                        with_payload=False, with_vector=False) for q in qs]
        rows: list[Hits] = []
        for start in range(0, len(requests), per_call):
            with self._calls("query_batch_points"):
                answers = self.conn.client.query_batch_points(self.name, requests=requests[start : start + per_call])
            rows += [[(p.id, self._score(p.score, lay)) for p in ans.points] for ans in answers]
        return rows

    def _search_filtered(self, qs: np.ndarray, k: int, excluded: list[int | str], lay: Layout) -> list[Hits]:
        flt = models.Filter(must_not=[models.HasIdCondition(has_id=excluded)]) if excluded else None
        per_call = max(1, min(QUERY_BATCH, _FILTER_IDS_PER_CALL // max(1, len(excluded))))
        return self._query(qs, k, lay, flt, per_call)

    def _search_overfetch(self, qs: np.ndarray, k: int, excluded: set[int | str], lay: Layout) -> list[Hits]:
        """Local mode scans every point for a has_id filter: over-fetch instead (ids come canonical);
        k + every excluded id, or the whole collection, keeps k survivors."""
        with self._calls("count"):
            count = int(self.conn.client.count(self.name, exact=True).count)
        return search_excluding(len(qs), k, excluded, lambda todo, n, _: self._query(qs[todo], n, lay, None, QUERY_BATCH),
                                ceiling=min(count, k + len(excluded)), first_extra=32, growth=4)

    # State -----------------------------------------------------------------------------------

    def state(self, name: str) -> QdrantState:
        check_name(name, "state collection")
        return QdrantState(lambda: self.conn, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
