"""Qdrant connector: local mode (a directory or ``:memory:``) and servers, through qdrant-client.

URIs::

    qdrant:///abs/dir?collection=docs            QdrantClient(path=/abs/dir); the directory must
                                                 already hold a Qdrant local database
    qdrant::memory:?collection=docs              QdrantClient(":memory:"), shared in this process
    qdrant+http://host:6333?collection=docs      a server (``+https`` for TLS); ``prefer_grpc=true``
    options: vector=<name> (named vector), timeout=<seconds>

The API key comes from ``QDRANT_API_KEY`` (or ``secret_env=NAME`` / ``secret_file=PATH``).

Write path and its traps
------------------------
* Vectors are written ONLY with ``update_vectors(points=[PointVectors(id, vector)], wait=True)``,
  which replaces the named vector and keeps the payload and every other named vector.
  ``upsert`` replaces the whole point: a bare-vector upsert silently wipes the payload
  (qdrant-client #370-style incidents; PEERS.md), so it is never used on user collections.
* Unknown ids: the server rejects the whole batch (404) and local mode raises mid-batch after
  writing the earlier points, so existence is checked first with ``retrieve`` (UnknownIds, nothing
  written), and every batch is read back and compared.
* Cosine collections store vectors normalised (float32 ``v / |v|``): what is read back is the
  normalised vector, and writing a stored vector back may move its last bit. The read-back check
  compares with the normalised vector at 1e-6; ``describe().details["vectors_round_trip"]`` says so.
* Ids are unsigned ints or UUIDs. A string id that is not a UUID can never exist: it is reported
  as missing by ``get_vectors`` and refused by ``update_vectors``. UUIDs are matched in any
  spelling Qdrant accepts and returned as the caller spelled them.
* Euclid collections return the distance: scores are converted to ``-distance**2`` (the
  contract's "higher is better", squared like the other backends).
* Local mode allows one client per directory per process: clients are shared by path within the
  process (and reference-counted), so the state and log collections, a harness and the store all
  use the same one.

Query log: one point per labelled query; point id = UUID5 of the query id; vector = the query
embedding (Dot, unnamed); payload ``{"query_id", "relevant_ids", "grades", "timestamp", "split"}``
(see ``connectors/_log.py``). State: point id = UUID5 of ``kind:key``; payload ``{"kind", "key",
"meta": JSON text, "has_vector"}``; Dot vectors so they round-trip bit-exactly.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ._base import (
    CollectionInfo,
    LabelledQuery,
    Metric,
    RecordId,
    SearchResult,
    StateCollection,
    StateRecord,
    VectorStore,
    as_vectors,
    check_ids,
    dedupe,
    pad_results,
)
from ._errors import (
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    InvalidURI,
    InvalidVectors,
    UnknownIds,
    UnsupportedCollection,
    WriteFailed,
)
from ._log import check_query_id, entry_fields, entry_from_fields
from ._uri import StoreConfig

__all__ = ["QdrantStore", "QdrantState", "create_collection", "local_client", "open_store"]

DISTANCE_TO_METRIC: dict[str, Metric] = {"Cosine": "cosine", "Dot": "dot", "Euclid": "l2"}
METRIC_TO_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "l2": models.Distance.EUCLID}
#: Points per write/read call: large enough to amortise a round trip, small enough for gRPC limits.
WRITE_BATCH = 256
READ_BATCH = 1000
_NAMESPACE = uuid.UUID("8f1d6a52-3c55-4c0e-9a51-6b8f3f0e5c21")
_CLIENT_VERSION = package_version("qdrant-client")


def open_store(config: StoreConfig) -> QdrantStore:
    return QdrantStore(config)


# -- clients ---------------------------------------------------------------------------------------

_LOCAL: dict[str, list[Any]] = {}  # key -> [client, references]
_LOCAL_LOCK = threading.Lock()


@contextmanager
def local_client(location: str) -> Iterator[QdrantClient]:
    """A local-mode client for a directory (or "" for ``:memory:``), shared in this process."""
    client = _acquire_local(location)
    try:
        yield client
    finally:
        _release_local(location)


def _acquire_local(location: str) -> QdrantClient:
    with _LOCAL_LOCK:
        entry = _LOCAL.get(location)
        if entry is None:
            try:
                client = QdrantClient(location=":memory:") if location == "" else QdrantClient(path=location)
            except RuntimeError as exc:  # "already accessed by another instance": another process
                raise ConnectionFailed(f"Qdrant local directory {location} is locked: {exc}") from None
            entry = _LOCAL[location] = [client, 0]
        entry[1] += 1
        return entry[0]


def _release_local(location: str) -> None:
    with _LOCAL_LOCK:
        entry = _LOCAL.get(location)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _LOCAL[location]
            if location:  # an in-memory database lives as long as its client: keep it for the process
                entry[0].close()
            else:
                _LOCAL[location] = [entry[0], 0]


class _Connection:
    """A client plus where it points, and the translation of client errors."""

    def __init__(self, config: StoreConfig):
        self.config = config
        self.local_key: str | None = None
        if config.is_server:
            self.where = f"Qdrant server {config.location}"
            grpc = (config.option("prefer_grpc") or "false").lower()
            if grpc not in ("true", "false", "1", "0"):
                raise InvalidURI(f"option prefer_grpc={grpc!r}: expected true or false")
            timeout = config.timeout(10.0)
            self.client = QdrantClient(url=config.location, api_key=config.secret, prefer_grpc=grpc in ("true", "1"),
                                       timeout=int(timeout) or 1, check_compatibility=False)
        else:
            if config.secret and config.option("secret_env") is not None:
                raise InvalidURI("an API key applies to qdrant+http(s) servers only")
            if config.transport == "local":
                path = Path(config.location)
                if not (path / "meta.json").is_file():
                    # QdrantClient(path=) would silently create an empty database here.
                    raise CollectionNotFound(f"no Qdrant local database at {path}, so collection "
                                             f"{config.collection!r} does not exist")
                self.where = f"Qdrant directory {path}"
            else:
                self.where = "in-memory Qdrant"
            self.local_key = config.location
            self.client = _acquire_local(config.location)

    @contextmanager
    def calls(self, what: str, collection: str, *, write: bool = False) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except UnexpectedResponse as exc:
            code = exc.status_code
            if code in (401, 403):
                raise AuthenticationFailed(f"{self.where} refused the API key (HTTP {code}) on {what}; check "
                                           "QDRANT_API_KEY / secret_env / secret_file") from None
            if code == 404:
                raise CollectionNotFound(f"{what}: Qdrant collection {collection!r} does not exist in "
                                         f"{self.where}") from None
            cls = WriteFailed if write else ConnectorError
            raise cls(f"{what} on Qdrant collection {collection!r} ({self.where}): HTTP {code}: "
                      f"{_short(exc.content)}") from None
        except (ResponseHandlingException, ConnectionError, TimeoutError, OSError) as exc:
            raise ConnectionFailed(f"{what} on {collection!r}: cannot reach {self.where}: "
                                   f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            grpc_error = _grpc_error(exc)
            if grpc_error is not None:
                raise grpc_error(f"{what} on {collection!r} ({self.where}): {exc}") from None
            if isinstance(exc, ValueError) and "not found" in str(exc):
                raise CollectionNotFound(f"{what}: Qdrant collection {collection!r} does not exist in "
                                         f"{self.where}") from None
            cls = WriteFailed if write else ConnectorError
            raise cls(f"{what} on Qdrant collection {collection!r} ({self.where}) failed: "
                      f"{type(exc).__name__}: {exc}") from exc

    def exists(self, name: str) -> bool:
        with self.calls("collection_exists", name):
            return bool(self.client.collection_exists(name))

    def server_version(self) -> str:
        if not self.config.is_server:
            return f"local (qdrant-client {_CLIENT_VERSION})"
        with self.calls("info", "-"):
            return str(self.client.info().version)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        if self.local_key is not None:
            _release_local(self.local_key)
        else:
            try:
                client.close()
            except Exception:  # closing must never mask the caller's own error
                pass


def _short(content: Any) -> str:
    text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
    return text[:300]


def _grpc_error(exc: Exception) -> type[ConnectorError] | None:
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        name = getattr(code(), "name", "")
    except Exception:
        return None
    return {"UNAVAILABLE": ConnectionFailed, "DEADLINE_EXCEEDED": ConnectionFailed,
            "UNAUTHENTICATED": AuthenticationFailed, "PERMISSION_DENIED": AuthenticationFailed,
            "NOT_FOUND": CollectionNotFound}.get(name)


# -- ids -------------------------------------------------------------------------------------------


def _point_id(i: RecordId) -> int | str | None:
    """The id Qdrant would store for ``i``, or None if Qdrant cannot hold it."""
    if isinstance(i, int):
        return i if 0 <= i < 2**64 else None
    try:
        return str(uuid.UUID(i))
    except ValueError:
        return None


def _key(i: int | str) -> int | str:
    return i if isinstance(i, int) else str(uuid.UUID(str(i)))


# -- the store -------------------------------------------------------------------------------------


class QdrantStore(VectorStore):
    def __init__(self, config: StoreConfig):
        self.config = config
        self.name = config.collection
        self._conn: _Connection | None = _Connection(config)
        self._layout: tuple[str | None, int, str] | None = None  # (vector name, dimension, distance)

    @property
    def conn(self) -> _Connection:
        if self._conn is None:
            raise ConnectorError("the Qdrant store is closed")
        return self._conn

    def _calls(self, what: str, *, write: bool = False):
        return self.conn.calls(what, self.name, write=write)

    def _vector_layout(self) -> tuple[str | None, int, str]:
        """(vector name or None for the unnamed vector, dimension, Qdrant distance name)."""
        if self._layout is None:
            if not self.conn.exists(self.name):
                raise CollectionNotFound(f"Qdrant collection {self.name!r} does not exist in {self.conn.where}")
            with self._calls("get_collection"):
                params = self.conn.client.get_collection(self.name).config.params
            self._layout = _pick_vector(self.name, params.vectors, self.config.option("vector"))
        return self._layout

    def _using(self) -> str | None:
        return self._vector_layout()[0]

    def _vec(self, point: Any) -> Any:
        name = self._using()
        return point.vector if name is None or not isinstance(point.vector, dict) else point.vector.get(name)

    def describe(self) -> CollectionInfo:
        name, dim, distance = self._vector_layout()
        with self._calls("count"):
            count = int(self.conn.client.count(self.name, exact=True).count)
        with self._calls("scroll"):
            first, _ = self.conn.client.scroll(self.name, limit=1, with_payload=False, with_vectors=False)
        id_type = "uuid" if first and isinstance(first[0].id, str) else "int"
        return CollectionInfo(
            backend="qdrant", collection=self.name, dimension=dim, metric=DISTANCE_TO_METRIC[distance],
            id_type=id_type, vector_name=name, count=count, server_version=self.conn.server_version(),
            details={
                "distance": distance, "mode": self.config.transport, "client_version": _CLIENT_VERSION,
                "write_path": "update_vectors(wait=True) only; existence checked first, read back after",
                "vectors_round_trip": "normalised by Qdrant (within 1e-6)" if distance == "Cosine" else "bit-exact",
            },
        )

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        name, dim, _ = self._vector_layout()
        offset = None
        while True:
            with self._calls("scroll"):
                points, offset = self.conn.client.scroll(
                    self.name, limit=batch_size, offset=offset, with_payload=False,
                    with_vectors=[name] if name is not None else True)
            if points:
                yield [p.id for p in points], _float32([self._vec(p) for p in points], dim)
            if offset is None:
                return

    def _retrieve(self, keys: Sequence[int | str], with_vectors: bool) -> dict[int | str, Any]:
        name = self._using()
        out: dict[int | str, Any] = {}
        for start in range(0, len(keys), READ_BATCH):
            chunk = list(keys[start : start + READ_BATCH])
            with self._calls("retrieve"):
                points = self.conn.client.retrieve(
                    self.name, ids=chunk, with_payload=False,
                    with_vectors=([name] if name is not None else True) if with_vectors else False)
            for p in points:
                out[_key(p.id)] = self._vec(p) if with_vectors else True
        return out

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        _, dim, _ = self._vector_layout()
        ids = check_ids(ids)
        wanted = {i: _point_id(i) for i in ids}
        got = self._retrieve(dedupe(k for k in wanted.values() if k is not None), with_vectors=True)
        found = [i for i in dedupe(ids) if wanted[i] is not None and wanted[i] in got]
        missing = [i for i in ids if wanted[i] is None or wanted[i] not in got]
        vecs = _float32([got[wanted[i]] for i in found], dim)
        return found, vecs, missing

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray) -> int:
        name, dim, distance = self._vector_layout()
        ids = check_ids(ids)
        seen: set[RecordId] = set()
        dupes = [i for i in ids if i in seen or seen.add(i)]
        if dupes:
            raise InvalidVectors(f"duplicate id(s) in update of {self.name!r}: {dedupe(dupes)[:10]}")
        vecs = as_vectors(vectors, dim, n=len(ids))
        if not ids:
            return 0
        keys = [_point_id(i) for i in ids]
        present = self._retrieve([k for k in keys if k is not None], with_vectors=False)
        unknown = [i for i, k in zip(ids, keys) if k is None or k not in present]
        if unknown:
            raise UnknownIds(self.name, unknown)
        for start in range(0, len(ids), WRITE_BATCH):
            part = slice(start, start + WRITE_BATCH)
            points = [models.PointVectors(id=k, vector={name: v.tolist()} if name is not None else v.tolist())
                      for k, v in zip(keys[part], vecs[part])]
            with self._calls("update_vectors", write=True):
                self.conn.client.update_vectors(self.name, points=points, wait=True)
            self._verify(keys[part], vecs[part], distance, dim)
        return len(ids)

    def _verify(self, keys: list[Any], sent: np.ndarray, distance: str, dim: int) -> None:
        got = self._retrieve(keys, with_vectors=True)
        vanished = [k for k in keys if k not in got]
        if vanished:
            raise WriteFailed(f"records {vanished[:10]} of {self.name!r} vanished during the update")
        back = _float32([got[k] for k in keys], dim)
        want = sent
        if distance == "Cosine":
            norms = np.linalg.norm(sent.astype(np.float64), axis=1, keepdims=True)
            want = (sent / np.where(norms == 0, 1, norms)).astype(np.float32)
        worst = float(np.max(np.abs(back.astype(np.float64) - want))) if len(keys) else 0.0
        if worst > 1e-6:
            raise WriteFailed(f"read-back of {self.name!r} differs from what was written by {worst:.3g}")

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        name, dim, distance = self._vector_layout()
        qs = as_vectors(queries, dim, what="queries")
        excluded = [p for p in (_point_id(i) for i in check_ids(list(exclude))) if p is not None]
        flt = models.Filter(must_not=[models.HasIdCondition(has_id=excluded)]) if excluded else None
        requests = [models.QueryRequest(query=q.tolist(), using=name, limit=k, filter=flt, with_payload=False)
                    for q in qs]
        rows: list[list[tuple[RecordId, float]]] = []
        for start in range(0, len(requests), 64):
            with self._calls("query_batch_points"):
                answers = self.conn.client.query_batch_points(self.name, requests=requests[start : start + 64])
            for ans in answers:
                rows.append([(p.id, -(p.score**2) if distance == "Euclid" else float(p.score)) for p in ans.points])
        return pad_results(rows, k)

    # Query log -------------------------------------------------------------------------------

    def log_exists(self, name: str) -> bool:
        return self.conn.exists(name)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        if not self.conn.exists(name):
            raise CollectionNotFound(f"query log {name!r} does not exist in {self.conn.where}")
        offset = None
        while True:
            with self.conn.calls("scroll query log", name):
                points, offset = self.conn.client.scroll(name, limit=batch_size, offset=offset,
                                                         with_payload=True, with_vectors=True)
            for p in points:
                payload = p.payload or {}
                qid = payload.get("query_id")
                if not isinstance(qid, str):
                    raise UnsupportedCollection(f"query log {name!r}: point {p.id!r} has no string query_id")
                vec = p.vector if not isinstance(p.vector, dict) else next(iter(p.vector.values()))
                yield entry_from_fields(name, qid, _float32([vec], len(vec))[0], payload)
            if offset is None:
                return

    def append_log(self, name: str, queries: Sequence[LabelledQuery]) -> int:
        queries = list(queries)
        if not queries:
            return 0
        ids = [check_query_id(q.query_id, name) for q in queries]
        if len(set(ids)) != len(ids):
            raise InvalidVectors(f"query log {name!r}: duplicate query_id(s) in one append: "
                                 f"{sorted({i for i in ids if ids.count(i) > 1})[:10]}")
        exists = self.conn.exists(name)
        dim = self._log_dimension(name, queries, exists)
        rows = []
        for q in queries:
            row = np.asarray(q.vector).ravel()
            if row.size != dim:
                raise InvalidVectors(f"query log {name!r} entry {q.query_id!r}: dimension {row.size} does not match "
                                     f"the log's dimension {dim}")
            rows.append(row)
        vecs = as_vectors(np.stack(rows), dim, what=f"query log {name!r} vectors", n=len(queries))
        payloads = [{"query_id": q.query_id, **entry_fields(q, name)} for q in queries]
        if not exists:
            with self.conn.calls("create query log", name, write=True):
                self.conn.client.create_collection(
                    name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.DOT))
        points = [models.PointStruct(id=str(uuid.uuid5(_NAMESPACE, q.query_id)), vector=v.tolist(), payload=p)
                  for q, v, p in zip(queries, vecs, payloads)]
        for start in range(0, len(points), WRITE_BATCH):
            with self.conn.calls("upsert query log", name, write=True):
                self.conn.client.upsert(name, points=points[start : start + WRITE_BATCH], wait=True)
        return len(points)

    def _log_dimension(self, name: str, queries: list[LabelledQuery], exists: bool) -> int:
        if exists:
            with self.conn.calls("get_collection", name):
                vectors = self.conn.client.get_collection(name).config.params.vectors
            return _pick_vector(name, vectors, None)[1]
        try:
            return self._vector_layout()[1]
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)

    def state(self, name: str) -> QdrantState:
        return QdrantState(self, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _pick_vector(collection: str, vectors: Any, wanted: str | None) -> tuple[str | None, int, str]:
    """The vector nudge-sync works on: the unnamed one, the only named one, or ``vector=``."""
    if isinstance(vectors, models.VectorParams):
        if wanted not in (None, ""):
            raise UnsupportedCollection(f"Qdrant collection {collection!r} has a single unnamed vector; "
                                        f"drop the vector={wanted!r} option")
        return None, int(vectors.size), _distance(vectors)
    named = dict(vectors or {})
    if not named:
        raise UnsupportedCollection(f"Qdrant collection {collection!r} has no dense vectors")
    if wanted is None:
        if len(named) > 1:
            raise UnsupportedCollection(f"Qdrant collection {collection!r} has several named vectors "
                                        f"{sorted(named)}; choose one with the URI option vector=NAME")
        wanted = next(iter(named))
    if wanted not in named:
        raise UnsupportedCollection(f"Qdrant collection {collection!r} has no vector named {wanted!r}; "
                                    f"it has {sorted(named)}")
    params = named[wanted]
    if getattr(params, "multivector_config", None) is not None:
        raise UnsupportedCollection(f"vector {wanted!r} of {collection!r} is a multivector; NUDGE needs one "
                                    "vector per record")
    return wanted, int(params.size), _distance(params)


def _distance(params: Any) -> str:
    name = getattr(params.distance, "value", str(params.distance))
    if name not in DISTANCE_TO_METRIC:
        raise UnsupportedCollection(f"Qdrant distance {name!r} is not supported (cosine, dot and euclid are)")
    return name


def _float32(rows: Sequence[Any], dim: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


# -- state collection ------------------------------------------------------------------------------


class QdrantState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    def __init__(self, store: QdrantStore, name: str):
        self.store = store
        self.name = name

    @property
    def conn(self) -> _Connection:
        return self.store.conn

    @staticmethod
    def _point(kind: str, key: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))

    def _dimension(self) -> int:
        with self.conn.calls("get_collection", self.name):
            vectors = self.conn.client.get_collection(self.name).config.params.vectors
        return _pick_vector(self.name, vectors, None)[1]

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def create(self, dimension: int) -> None:
        if self.exists():
            if self._dimension() != dimension:
                raise UnsupportedCollection(f"state collection {self.name!r} holds {self._dimension()}-d vectors, "
                                            f"not {dimension}-d")
            return
        with self.conn.calls("create state", self.name, write=True):
            self.conn.client.create_collection(
                self.name, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.DOT))
            if self.conn.config.is_server:  # local mode ignores payload indexes (and warns)
                self.conn.client.create_payload_index(self.name, "kind", models.PayloadSchemaType.KEYWORD)

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        records = list(records)
        if not records:
            return
        dim = self._dimension()
        points = []
        for r in records:
            vec = np.zeros(dim, np.float32) if r.vector is None else as_vectors(
                np.asarray(r.vector).reshape(1, -1), dim, n=1, what=f"state {kind}:{r.key}")[0]
            points.append(models.PointStruct(
                id=self._point(kind, r.key), vector=vec.tolist(),
                payload={"kind": kind, "key": r.key, "meta": json.dumps(r.meta), "has_vector": r.vector is not None}))
        for start in range(0, len(points), WRITE_BATCH):
            with self.conn.calls("upsert state", self.name, write=True):
                self.conn.client.upsert(self.name, points=points[start : start + WRITE_BATCH], wait=True)

    @staticmethod
    def _record(p: Any) -> StateRecord:
        payload = p.payload or {}
        vec = np.asarray(p.vector, dtype=np.float32) if payload.get("has_vector") else None
        return StateRecord(payload["key"], vec, json.loads(payload["meta"]))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        out: list[StateRecord] = []
        keys = list(keys)
        for start in range(0, len(keys), READ_BATCH):
            ids = [self._point(kind, k) for k in keys[start : start + READ_BATCH]]
            with self.conn.calls("retrieve state", self.name):
                points = self.conn.client.retrieve(self.name, ids=ids, with_payload=True, with_vectors=True)
            out += [self._record(p) for p in points if (p.payload or {}).get("kind") == kind]
        order = {k: n for n, k in enumerate(keys)}
        return sorted(out, key=lambda r: order[r.key])

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        if not self.exists():
            return
        flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value=kind))])
        offset = None
        while True:
            with self.conn.calls("scroll state", self.name):
                points, offset = self.conn.client.scroll(self.name, scroll_filter=flt, limit=batch_size,
                                                         offset=offset, with_payload=True, with_vectors=True)
            if points:
                yield [self._record(p) for p in points]
            if offset is None:
                return

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), WRITE_BATCH):
            ids = [self._point(kind, k) for k in keys[start : start + WRITE_BATCH]]
            with self.conn.calls("delete state", self.name, write=True):
                self.conn.client.delete(self.name, points_selector=models.PointIdsList(points=ids), wait=True)

    def drop(self) -> None:
        if self.exists():
            with self.conn.calls("delete state collection", self.name, write=True):
                self.conn.client.delete_collection(self.name)


# -- loader ----------------------------------------------------------------------------------------


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create ``config.collection`` (one unnamed vector) and upsert the records (demo, benchmarks).

    A local directory is created if needed. Documents go in the payload under ``"document"``.
    """
    if config.transport == "local":
        Path(config.location).mkdir(parents=True, exist_ok=True)
        _acquire_local(config.location)  # creates the database files (meta.json)
        _release_local(config.location)
    conn = _Connection(config)
    name = config.collection
    try:
        if conn.exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        ids = check_ids(ids)
        keys = [_point_id(i) for i in ids]
        if any(k is None for k in keys):
            raise InvalidVectors("Qdrant ids are unsigned ints or UUIDs")
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(ids):
            raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
        vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
        with conn.calls("create_collection", name, write=True):
            conn.client.create_collection(
                name, vectors_config=models.VectorParams(size=vecs.shape[1], distance=METRIC_TO_DISTANCE[metric]))
        batch = 1000 if config.is_server else 4096
        for start in range(0, len(ids), batch):
            points = []
            for j in range(start, min(start + batch, len(ids))):
                payload = dict(payloads[j]) if payloads else {}
                if documents:
                    payload["document"] = documents[j]
                points.append(models.PointStruct(id=keys[j], vector=vecs[j].tolist(), payload=payload))
            with conn.calls("upsert", name, write=True):
                conn.client.upsert(name, points=points, wait=True)
    finally:
        conn.close()
