"""Qdrant connector: local mode (a directory or ``:memory:``) and servers, through qdrant-client.

URIs::

    qdrant:///abs/dir?collection=docs            QdrantClient(path=/abs/dir); the directory must
    qdrant:relative/dir?collection=docs          already hold a Qdrant local database
    qdrant::memory:?collection=docs              QdrantClient(":memory:"), shared in this process
    qdrant+http://host:6333?collection=docs      a server (``+https`` for TLS; a path prefix such as
                                                 ``https://h/qdrant`` is kept; without a port the
                                                 client uses 6333, also for https)
    options: vector=<name> (named vector), timeout=<seconds> (default 10), retry_budget=<seconds>
             (see connectors._retry), version_field=<payload field> (conditional writes, below),
             prefer_grpc=true|false
             (gRPC goes to port 6334 of the URI's host, qdrant-client's default: the URI's port
             is the REST port, still used for a few calls)

The API key comes from ``QDRANT_API_KEY`` (or ``secret_env=NAME`` / ``secret_file=PATH``) and is
sent to servers only (local mode has no authentication and ignores it). Errors never contain it.

Write path and its traps (why the code looks the way it does)
------------------------------------------------------------
* Vectors are written ONLY with ``update_vectors(points=[PointVectors(id, vector)], wait=True)``,
  which replaces the one named vector and keeps the payload and every other named vector.
  ``upsert`` replaces the whole point: a bare-vector upsert silently wipes the payload (PEERS.md),
  so it is never used on user collections (only on our own log and state collections).
* Unknown ids: the server writes every other point of the batch and then answers 404 for the first
  missing one (local mode does the same, raising KeyError), so existence is checked first with
  ``retrieve`` (UnknownIds, nothing written). Every batch is then read back and compared, which also
  catches a record deleted by someone else between the check and the write (WriteFailed).
* Ids are unsigned 64-bit ints or UUIDs. A string that is not a UUID (or a negative int) can never
  be a Qdrant id: ``get_vectors`` reports it missing, ``update_vectors`` refuses it up front with
  InvalidVectors naming it. UUIDs are matched in any spelling Qdrant accepts (upper case, no
  dashes, braces), returned as the caller spelled them by ``get_vectors`` and in Qdrant's canonical
  lowercase form by ``iter_vectors`` / ``search``.
* Cosine collections store ``v / |v|`` computed in float32, by the server and by local mode alike.
  The read-back check compares with our own float32 normalisation at 1e-6 (the two may differ by
  one float32 ulp, so a cosine write is not bit-exact, and writing a stored vector back may move
  its last bit); Dot and Euclid collections round-trip bit-exactly and are compared exactly.
  Float16 vector storage (``datatype=float16``) is compared after rounding to float16; uint8 (and
  other quantised datatypes) are refused: they cannot hold a nudged vector.
  ``describe().details["vectors_round_trip"]`` says which case applies.
* Scores are "higher is better": Cosine and Dot scores are Qdrant's own; Euclid returns the
  distance, converted to ``-distance**2`` (the squared form the other backends use).
* Exclusion search: servers get one ``query_batch_points`` call per batch of queries with a
  ``must_not: has_id`` filter (evaluated against the server's id index). Local mode evaluates that
  filter in Python for every point and query (measured: 0.26 s per query for 100 excluded ids out
  of 20k, 2 s for 5,000), so there it over-fetches instead (k + excluded, widened only for queries
  that still lack k results) and drops excluded ids: same results, local search being exact.
* Reading: ``scroll(with_vectors=..., limit=batch_size)`` following ``next_page_offset`` (ids in
  order, each exactly once; memory bounded by the batch size).
* Local mode: a directory can be open by one ``QdrantClient`` at a time (a file lock; a second
  client in the same process is refused too). Clients are therefore shared by path within the
  process and reference-counted (:func:`local_client`): the log and state collections, a test
  harness and any number of stores use the same one. Another process holding the directory is
  reported as ConnectionFailed. Local mode persists every point with its own SQLite commit: it
  writes about 100-2,500 points/s depending on the disk's fsync cost (tmpfs is fastest).

Conditional writes (URI option ``version_field=<payload field>``)
-----------------------------------------------------------------
An application that changes a payload field (say ``updated_at``) on every write of a point's
vector can let nudge-sync write only points it has not touched since nudge-sync read them:
``get_versioned`` reads each point's vector and that field in one ``retrieve`` call (one
snapshot), and ``update_vectors_if`` sends ``update_vectors(..., update_filter=...)`` so Qdrant
writes a point only while its field still holds the value read. A point whose version moved is
silently not written; the caller reads the batch back and sees the other writer's vector.
Batches with few distinct versions (every point written by one import, say) get one call per
version (``must: field == value``); others calls of 32 points with a ``should`` of ``(has_id,
field == value)`` pairs (local mode checks every point of a call against every pair). Version values must be scalars (str, int, float, bool; floats match by range
``[v, v]``); a point without the field is written only while it still has none (``is_empty``).
``describe().conditional_writes`` says whether the option is on.

Query log (a sibling collection, as easy to fill with the native client as with us)
-----------------------------------------------------------------------------------
One point per labelled query: point id = UUID5 of the query id (Qdrant ids cannot be arbitrary
strings); vector = the query embedding (unnamed, Dot, so it round-trips exactly); payload
``{"query_id", "relevant_ids", "grades", "timestamp", "split"}`` (``connectors/_log.py``). Example:
``client.upsert("docs_log", [PointStruct(id=str(uuid4()), vector=qvec, payload={"query_id": "q-17",
"relevant_ids": [4, 9], "timestamp": time.time()})])``. A log created by hand may use a named
vector (the single one, else the URI's ``vector=`` name) and any distance.

State collection
----------------
Point id = UUID5 of ``"<kind>:<key>"`` (kinds contain no ``:``); payload ``{"kind", "key", "meta":
JSON text, "has_vector"}``; unnamed Dot vectors (never normalised) so they round-trip bit-exactly;
records without a vector store zeros and read back as ``None``. Servers get a keyword payload index
on ``kind`` (local mode ignores payload indexes).
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    Versioned,
    as_vectors,
    check_batch_size,
    check_ids,
    check_state_dimension,
    check_state_keys,
    check_state_kind,
    check_update_ids,
    dedupe,
    pad_results,
    read_page_rows,
    state_meta_json,
    state_vector,
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
from ._log import (
    check_entry_sizes,
    check_log_dimension,
    chunks_by_bytes,
    entry_fields,
    entry_from_fields,
    fields_bytes,
    log_entries,
    write_or_put_back,
)
from ._retry import retry_status as _retry_status
from ._secrets import redact
from ._uri import StoreConfig

__all__ = ["QdrantState", "QdrantStore", "create_collection", "local_client", "open_store"]

DISTANCE_TO_METRIC: dict[str, Metric] = {"Cosine": "cosine", "Dot": "dot", "Euclid": "l2"}
METRIC_TO_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "l2": models.Distance.EUCLID}
#: Points per write call: amortises the round trip, stays far below gRPC's 32 MiB message limit
#: (and local mode commits per point anyway).
WRITE_BATCH = 256
#: Bytes of payloads and vectors per log upsert request: well under a server's default 32 MiB limit.
_REQUEST_BYTES = 8 * 1024 * 1024
#: Ids per ``retrieve`` call.
READ_BATCH = 1000
#: Queries per ``query_batch_points`` call, and the budget of excluded ids carried by one call
#: (each request of the batch repeats the filter).
QUERY_BATCH = 64
_FILTER_IDS_PER_CALL = 200_000
_NAMESPACE = uuid.UUID("8f1d6a52-3c55-4c0e-9a51-6b8f3f0e5c21")
_CLIENT_VERSION = package_version("qdrant-client")
_MAX_ID = 2**64


def open_store(config: StoreConfig) -> QdrantStore:
    """Open ``config.collection`` (local clients open now, servers are contacted on first use)."""
    return QdrantStore(config)


# -- local clients ---------------------------------------------------------------------------------

_LOCAL: dict[str, list[Any]] = {}  # key -> [client, references]
_LOCAL_LOCK = threading.Lock()


def _local_key(location: str) -> str:
    # "" is :memory:; paths are resolved so two spellings of one directory share one client
    return "" if location == "" else os.path.realpath(location)


@contextmanager
def local_client(location: str) -> Iterator[QdrantClient]:
    """The process-wide local-mode client of a directory ("" for ``:memory:``), held for the block.

    Local mode allows one client per directory, so everything in this process that opens the same
    directory (stores, their log and state collections, test harnesses, benchmarks) shares it.
    """
    client = _acquire_local(location)
    try:
        yield client
    finally:
        _release_local(location)


def _acquire_local(location: str) -> QdrantClient:
    key = _local_key(location)
    with _LOCAL_LOCK:
        entry = _LOCAL.get(key)
        if entry is None:
            try:
                client = QdrantClient(location=":memory:") if key == "" else QdrantClient(path=key)
            except RuntimeError as exc:  # "already accessed by another instance": another process
                raise ConnectionFailed(
                    f"Qdrant local directory {key} is in use by another process (local mode allows one "
                    f"client per directory; use a Qdrant server for concurrent access): {exc}"
                ).retryable(False) from None
            entry = _LOCAL[key] = [client, 0]
        entry[1] += 1
        return entry[0]


def _release_local(location: str) -> None:
    key = _local_key(location)
    with _LOCAL_LOCK:
        entry = _LOCAL.get(key)
        if entry is None:
            return
        entry[1] = max(0, entry[1] - 1)
        # an in-memory database lives as long as its client: keep it for the life of the process
        if entry[1] == 0 and key != "":
            del _LOCAL[key]
            entry[0].close()


# -- connection ------------------------------------------------------------------------------------


class _Connection:
    """A client plus where it points, and the translation of client errors."""

    def __init__(self, config: StoreConfig):
        self.config = config
        self.local_key: str | None = None
        if config.is_server:
            self.where = f"Qdrant server {config.location}"
            grpc = (config.option("prefer_grpc") or "false").strip().lower()
            if grpc not in ("true", "false", "1", "0", "yes", "no"):
                raise InvalidURI(f"option prefer_grpc={grpc!r}: expected true or false")
            if grpc in ("true", "1", "yes"):
                # qdrant-client talks gRPC to grpc_port (6334) on the URI's host, whatever its port
                self.where += " (gRPC port 6334)"
            # check_compatibility=False: the client's version probe is an extra request that only
            # warns; describe() reports the server version instead.
            self.client = QdrantClient(url=config.location, api_key=config.secret,
                                       prefer_grpc=grpc in ("true", "1", "yes"),
                                       timeout=math.ceil(config.timeout(10.0)), check_compatibility=False)
            return
        if config.option("prefer_grpc") is not None:
            raise InvalidURI("option prefer_grpc applies to qdrant+http(s) servers only")
        if config.transport == "local":
            path = Path(config.location)
            if not (path / "meta.json").is_file():
                # QdrantClient(path=) would silently create an empty database here.
                raise CollectionNotFound(f"no Qdrant local database at {path} (no meta.json), so collection "
                                         f"{config.collection!r} does not exist")
            self.where = f"Qdrant directory {path}"
        else:
            self.where = "in-memory Qdrant"
        self.local_key = config.location
        self.client = _acquire_local(config.location)

    @property
    def is_local(self) -> bool:
        return self.local_key is not None

    @contextmanager
    def calls(self, what: str, collection: str, *, write: bool = False) -> Iterator[None]:
        """Translate qdrant-client / httpx / gRPC exceptions raised by the calls in the block."""
        try:
            yield
        except ConnectorError:
            raise
        except UnexpectedResponse as exc:
            raise self._http_error(exc, what, collection, write) from None
        except (ResponseHandlingException, ConnectionError, TimeoutError, OSError) as exc:
            raise ConnectionFailed(f"{what} on {collection!r}: cannot reach {self.where}: "
                                   f"{type(exc).__name__}: {exc}") from None
        except KeyError as exc:  # local mode: a point vanished (update_vectors names it)
            cls = WriteFailed if write else ConnectorError
            raise cls(f"{what} on Qdrant collection {collection!r} ({self.where}): point "
                      f"{exc.args[0] if exc.args else '?'!r} does not exist (deleted concurrently?)") from None
        except Exception as exc:
            grpc_error = _grpc_error(exc)
            if grpc_error is not None:
                cls, transient = grpc_error
                if cls is CollectionNotFound and "ollection" not in str(exc):
                    cls = WriteFailed if write else ConnectorError
                if cls is ConnectorError and write:
                    cls = WriteFailed
                raise cls(f"{what} on {collection!r} ({self.where}): {exc}").retryable(transient) from None
            if isinstance(exc, ValueError) and str(exc).startswith("Collection") and "not found" in str(exc):
                raise CollectionNotFound(f"{what}: Qdrant collection {collection!r} does not exist in "
                                         f"{self.where}") from None
            cls = WriteFailed if write else ConnectorError
            # not chained: the client's exception may hold an echoed secret (the message is redacted)
            raise cls(f"{what} on Qdrant collection {collection!r} ({self.where}) failed: "
                      f"{type(exc).__name__}: {exc}") from None

    def _http_error(self, exc: UnexpectedResponse, what: str, collection: str, write: bool) -> ConnectorError:
        code, text = exc.status_code, _short(exc.content)
        if code in (401, 403):
            return AuthenticationFailed(f"{self.where} refused the API key (HTTP {code}) on {what}; check "
                                        "QDRANT_API_KEY / secret_env / secret_file (a read-only key cannot write)")
        if code == 404 and "ollection" in text:  # not "No point with id ... found"
            return CollectionNotFound(f"{what}: Qdrant collection {collection!r} does not exist in {self.where}")
        cls = WriteFailed if write else ConnectorError
        error = cls(f"{what} on Qdrant collection {collection!r} ({self.where}): HTTP {code}: {text}")
        return error.retryable(_retry_status(code))  # overloaded, rate-limited, a gateway in between

    def exists(self, name: str) -> bool:
        with self.calls("collection_exists", name):
            return bool(self.client.collection_exists(name))

    def vectors_config(self, name: str) -> Any:
        if not self.exists(name):
            raise CollectionNotFound(f"Qdrant collection {name!r} does not exist in {self.where}")
        with self.calls("get_collection", name):
            return self.client.get_collection(name).config.params.vectors

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
            return
        try:
            client.close()
        except Exception:  # closing must never mask the caller's own error
            pass


def _short(content: Any) -> str:
    text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
    return redact(text)[:300]  # redacted before it is cut: a cut secret would no longer match


#: gRPC status -> (error class, worth retrying)
_GRPC_ERRORS: dict[str, tuple[type[ConnectorError], bool]] = {
    "UNAVAILABLE": (ConnectionFailed, True), "DEADLINE_EXCEEDED": (ConnectionFailed, True),
    "RESOURCE_EXHAUSTED": (ConnectorError, True),  # rate limits
    "UNAUTHENTICATED": (AuthenticationFailed, False), "PERMISSION_DENIED": (AuthenticationFailed, False),
    "NOT_FOUND": (CollectionNotFound, False),
}


def _grpc_error(exc: Exception) -> tuple[type[ConnectorError], bool] | None:
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        name = getattr(code(), "name", "")
    except Exception:
        return None
    return _GRPC_ERRORS.get(name)


# -- conditional writes ------------------------------------------------------------------------------

#: Distinct versions in a write batch up to which each gets its own call (a one-condition filter);
#: above, one call carries a ``should`` of (id, version) pairs.
_VERSION_GROUPS = 8
#: Points per call with a ``should`` filter of (id, version) pairs.
_PAIRS_PER_CALL = 32


def _version_of(payload: Any, field: str, collection: str, point: Any) -> Any:
    value = (payload or {}).get(field)
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise UnsupportedCollection(f"point {point!r} of {collection!r}: version field {field!r} holds a "
                                    f"{type(value).__name__}; conditional writes need a str, int, float or bool")
    return value


def _version_condition(field: str, value: Any) -> Any:
    if value is None:
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=field))
    if isinstance(value, float):
        return models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=field, match=models.MatchValue(value=value))


def _version_filters(field: str, keys: list[Any], versions: list[Any]) -> Iterator[tuple[list[int], Any]]:
    """``(positions, update_filter)`` pairs covering one write batch (see the module docstring)."""
    groups: dict[tuple[str, Any], list[int]] = {}
    for j, v in enumerate(versions):
        groups.setdefault((type(v).__name__, v), []).append(j)
    if len(groups) <= _VERSION_GROUPS:
        for (_, value), positions in groups.items():
            yield positions, models.Filter(must=[_version_condition(field, value)])
        return
    # local mode checks every point of a call against every pair: keep the calls small
    for start in range(0, len(keys), _PAIRS_PER_CALL):
        part = range(start, min(len(keys), start + _PAIRS_PER_CALL))
        pairs = [models.Filter(must=[models.HasIdCondition(has_id=[keys[j]]), _version_condition(field, versions[j])])
                 for j in part]
        yield list(part), models.Filter(should=pairs)


# -- ids -------------------------------------------------------------------------------------------


def _point_id(i: RecordId) -> int | str | None:
    """The id Qdrant would store for ``i`` (canonical UUID text), or None if Qdrant cannot hold it."""
    if isinstance(i, int):
        return i if 0 <= i < _MAX_ID else None
    try:
        return str(uuid.UUID(i))
    except ValueError:
        return None


def _key(i: int | str) -> int | str:
    return i if isinstance(i, int) else str(uuid.UUID(str(i)))


def _impossible(ids: Sequence[RecordId]) -> str:
    shown = ", ".join(repr(i) for i in ids[:10])
    return (f"{len(ids)} id(s) can never exist in Qdrant, whose point ids are unsigned 64-bit ints or "
            f"UUIDs: {shown}")


# -- vector layout -----------------------------------------------------------------------------------


class _Layout:
    """The vector nudge-sync works on: its name (None = unnamed), dimension, distance, datatype."""

    def __init__(self, name: str | None, dim: int, distance: str, datatype: str):
        self.name, self.dim, self.distance, self.datatype = name, dim, distance, datatype

    def wrap(self, vec: list[float]) -> Any:
        return {self.name: vec} if self.name is not None else vec

    def unwrap(self, stored: Any) -> Any:
        if isinstance(stored, dict):
            return stored.get(self.name if self.name is not None else "")
        return stored

    @property
    def with_vectors(self) -> Any:
        return [self.name] if self.name is not None else True

    def expected(self, sent: np.ndarray) -> tuple[np.ndarray, float]:
        """What Qdrant should hand back for ``sent`` and the tolerance (0 = bit-exact)."""
        want, tol = sent, 0.0
        if self.distance == "Cosine":
            norms = np.linalg.norm(sent, axis=1, keepdims=True).astype(np.float32)  # float32, like Qdrant
            want = np.where(norms > 1e-30, sent / np.where(norms > 1e-30, norms, 1), sent).astype(np.float32)
            tol = 1e-6
        if self.datatype == "float16":
            want = want.astype(np.float16).astype(np.float32)
            tol = max(tol, 1e-3 * float(np.max(np.abs(want), initial=0.0)))
        return want, tol


def _pick_vector(collection: str, vectors: Any, wanted: str | None) -> _Layout:
    """The unnamed vector, the only named one, or the one ``vector=`` names; refuses ambiguity."""
    if isinstance(vectors, models.VectorParams):
        if wanted not in (None, ""):
            raise UnsupportedCollection(f"Qdrant collection {collection!r} has a single unnamed vector; "
                                        f"drop the vector={wanted!r} option")
        return _layout(collection, None, vectors)
    named = dict(vectors or {})
    if not named:
        raise UnsupportedCollection(f"Qdrant collection {collection!r} has no dense vectors (sparse vectors "
                                    "cannot be nudged)")
    if wanted in (None, ""):
        if len(named) > 1:
            raise UnsupportedCollection(f"Qdrant collection {collection!r} has {len(named)} named vectors "
                                        f"{sorted(named)}; choose one with the URI option vector=NAME")
        wanted = next(iter(named))
    if wanted not in named:
        raise UnsupportedCollection(f"Qdrant collection {collection!r} has no vector named {wanted!r}; "
                                    f"its named vectors are {sorted(named)}")
    return _layout(collection, wanted, named[wanted])


def _layout(collection: str, name: str | None, params: Any) -> _Layout:
    what = f"vector {name!r} of {collection!r}" if name is not None else f"the vector of {collection!r}"
    if getattr(params, "multivector_config", None) is not None:
        raise UnsupportedCollection(f"{what} is a multivector; NUDGE needs one vector per record")
    distance = getattr(params.distance, "value", str(params.distance))
    if distance not in DISTANCE_TO_METRIC:
        raise UnsupportedCollection(f"{what} uses distance {distance!r}; nudge-sync serves Cosine, Dot and Euclid")
    raw = getattr(params, "datatype", None)
    datatype = str(getattr(raw, "value", raw) or "float32")
    if datatype not in ("float32", "float16"):
        raise UnsupportedCollection(f"{what} stores {datatype} vectors, which cannot hold a nudged vector; "
                                    "nudge-sync writes float32 or float16 vectors only")
    return _Layout(name, int(params.size), distance, datatype)


def _float32(rows: Sequence[Any], dim: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidVectors(f"k must be a non-negative int, got {k!r}")
    return int(k)


# -- the store -------------------------------------------------------------------------------------


class QdrantStore(VectorStore):
    """One Qdrant collection (see the module docstring for the write path and its checks)."""

    def __init__(self, config: StoreConfig):
        self.config = config
        self.name = config.collection
        self._conn: _Connection | None = _Connection(config)
        self._layout_cache: _Layout | None = None

    @property
    def conn(self) -> _Connection:
        if self._conn is None:
            raise ConnectorError("the Qdrant store is closed")
        return self._conn

    def _calls(self, what: str, *, write: bool = False):
        return self.conn.calls(what, self.name, write=write)

    def _layout(self) -> _Layout:
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
            round_trip, tolerance = "normalised by Qdrant in float32 (compared within 1e-6)", 1e-6
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

    def _vectors_of(self, points: Sequence[Any], lay: _Layout) -> np.ndarray:
        rows = [lay.unwrap(p.vector) for p in points]
        absent = [p.id for p, r in zip(points, rows) if r is None]
        if absent:  # a named vector is optional per point in Qdrant
            raise UnsupportedCollection(f"{len(absent)} point(s) of {self.name!r} have no vector "
                                        f"{lay.name or '(unnamed)'!r}: {absent[:10]}")
        return _float32(rows, lay.dim)

    def _retrieve(self, keys: Sequence[int | str], lay: _Layout | None) -> dict[int | str, Any]:
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
        return found, _float32([got[wanted[i]] for i in found], lay.dim), missing

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
        return Versioned(found, _float32([got[wanted[i]][0] for i in found], lay.dim),
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
        return len(keys)

    # Writing ---------------------------------------------------------------------------------

    def _checked_update(self, ids: Sequence[RecordId], vectors: np.ndarray) -> tuple[_Layout, list[Any], np.ndarray]:
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
        return len(keys)

    def _verify(self, keys: list[Any], sent: np.ndarray, lay: _Layout) -> None:
        """Read the batch back: exact for Dot/Euclid, within 1e-6 of our normalisation for Cosine."""
        got = self._retrieve(keys, lay)
        vanished = [k for k in keys if got.get(k) is None]
        if vanished:
            raise WriteFailed(f"{len(vanished)} record(s) of {self.name!r} vanished during the update "
                              f"(deleted concurrently?): {vanished[:10]}")
        back = _float32([got[k] for k in keys], lay.dim)
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
        k = _check_k(k)
        # ids Qdrant cannot hold cannot be returned either: nothing to exclude for them
        excluded = dedupe(p for p in (_point_id(i) for i in check_ids(list(exclude))) if p is not None)
        if k == 0 or len(qs) == 0:
            return pad_results([[] for _ in qs], k)
        if self.conn.is_local and excluded:
            rows = self._search_overfetch(qs, k, set(excluded), lay)
        else:
            rows = self._search_filtered(qs, k, excluded, lay)
        return pad_results(rows, k)

    def _score(self, score: float, lay: _Layout) -> float:
        return -(float(score) ** 2) if lay.distance == "Euclid" else float(score)

    def _query(self, qs: np.ndarray, limit: int, lay: _Layout, flt: Any, per_call: int) -> list[list[tuple[RecordId, float]]]:
        requests = [models.QueryRequest(query=q.tolist(), using=lay.name, limit=limit, filter=flt,
                                        with_payload=False, with_vector=False) for q in qs]
        rows: list[list[tuple[RecordId, float]]] = []
        for start in range(0, len(requests), per_call):
            with self._calls("query_batch_points"):
                answers = self.conn.client.query_batch_points(self.name, requests=requests[start : start + per_call])
            rows += [[(p.id, self._score(p.score, lay)) for p in ans.points] for ans in answers]
        return rows

    def _search_filtered(self, qs: np.ndarray, k: int, excluded: list[int | str], lay: _Layout) -> list[list[tuple[RecordId, float]]]:
        flt = models.Filter(must_not=[models.HasIdCondition(has_id=excluded)]) if excluded else None
        per_call = max(1, min(QUERY_BATCH, _FILTER_IDS_PER_CALL // max(1, len(excluded))))
        return self._query(qs, k, lay, flt, per_call)

    def _search_overfetch(self, qs: np.ndarray, k: int, excluded: set[int | str], lay: _Layout) -> list[list[tuple[RecordId, float]]]:
        with self._calls("count"):
            count = int(self.conn.client.count(self.name, exact=True).count)
        ceiling = min(count, k + len(excluded))  # enough to keep k survivors whatever happens
        n = min(ceiling, k + min(len(excluded), max(k, 32)))
        rows: list[list[tuple[RecordId, float]]] = [[] for _ in qs]
        todo = list(range(len(qs)))
        while todo and n > 0:
            again = []
            for qi, hits in zip(todo, self._query(qs[todo], n, lay, None, QUERY_BATCH)):
                rows[qi] = [(i, s) for i, s in hits if i not in excluded]  # ids come canonical
                if len(rows[qi]) < k and len(hits) >= n and n < ceiling:
                    again.append(qi)
            todo, n = again, min(ceiling, n * 4)
        return rows

    # Query log -------------------------------------------------------------------------------

    def log_exists(self, name: str) -> bool:
        _check_name(name, "query log")
        return self.conn.exists(name)

    def _log_layout(self, name: str) -> _Layout:
        try:
            return _pick_vector(name, self.conn.vectors_config(name), None)
        except UnsupportedCollection:
            # several named vectors: the one the URI names for the data collection, if the log has it
            wanted = self.config.option("vector")
            if wanted is None:
                raise
            return _pick_vector(name, self.conn.vectors_config(name), wanted)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        batch_size = check_batch_size(batch_size)
        _check_name(name, "query log")
        if not self.conn.exists(name):
            raise CollectionNotFound(f"query log {name!r} does not exist in {self.conn.where}")
        lay = self._log_layout(name)
        offset = None
        while True:
            with self.conn.calls("scroll query log", name):
                points, offset = self.conn.client.scroll(name, limit=batch_size, offset=offset,
                                                         with_payload=True, with_vectors=lay.with_vectors)
            for p in points:
                payload = p.payload or {}
                qid = payload.get("query_id")
                if not isinstance(qid, str) or not qid:
                    raise UnsupportedCollection(f"query log {name!r}: point {p.id!r} has no string payload "
                                                "field 'query_id'")
                vec = lay.unwrap(p.vector)
                if vec is None:
                    raise UnsupportedCollection(f"query log {name!r}: entry {qid!r} has no vector")
                yield entry_from_fields(name, qid, _float32([vec], lay.dim)[0], payload)
            if offset is None:
                return

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        queries = log_entries(queries, name)
        if not queries:
            return 0
        _check_name(name, "query log")
        rows = check_batch_size(WRITE_BATCH if batch_size is None else batch_size)
        exists = self.conn.exists(name)
        lay = self._log_layout(name) if exists else _Layout(None, self._new_log_dimension(queries), "Dot", "float32")
        check_log_dimension(name, queries, lay.dim)
        payloads = [{"query_id": q.query_id, **entry_fields(q, name)} for q in queries]
        sizes = [fields_bytes(p) for p in payloads]
        check_entry_sizes(name, queries, sizes, " (half of a Qdrant server's default request limit, 32 MiB)")
        points = [models.PointStruct(id=_log_point(q.query_id), vector=lay.wrap(q.vector.tolist()), payload=p)
                  for q, p in zip(queries, payloads)]
        before = self._log_points(name, [p.id for p in points]) if exists else []

        def create() -> None:
            with self.conn.calls("create query log", name, write=True):
                self.conn.client.create_collection(
                    name, vectors_config=models.VectorParams(size=lay.dim, distance=models.Distance.DOT))

        def upsert(part: slice) -> Callable[[], None]:
            def write() -> None:
                with self.conn.calls("upsert query log", name, write=True):
                    # our own collection: one point per query, replaced whole on purpose
                    self.conn.client.upsert(name, points=points[part], wait=True)
            return write

        writes = [] if exists else [create]
        writes += [upsert(part) for part in chunks_by_bytes([s + 16 * lay.dim for s in sizes], rows, _REQUEST_BYTES)]
        write_or_put_back(name, writes, lambda: self._put_log_back(name, exists, [p.id for p in points], before))
        return len(points)

    def _log_points(self, name: str, point_ids: list[str]) -> list[Any]:
        """The log's points among ``point_ids`` as they are now (payloads and vectors), to put back."""
        found = []
        for start in range(0, len(point_ids), WRITE_BATCH):
            with self.conn.calls("read query log", name):
                found += self.conn.client.retrieve(name, point_ids[start : start + WRITE_BATCH], with_payload=True,
                                                   with_vectors=True)
        return found

    def _put_log_back(self, name: str, existed: bool, written: list[str], before: list[Any]) -> str:
        """Undo an append: drop a log it created, else delete the points it added and rewrite those it
        replaced with what they held."""
        if not existed:
            with self.conn.calls("drop query log", name, write=True):
                self.conn.client.delete_collection(name)
            return "the log this append created was removed"
        kept = {str(p.id) for p in before}
        added = [i for i in written if i not in kept]
        for start in range(0, len(added), WRITE_BATCH):
            with self.conn.calls("delete from query log", name, write=True):
                self.conn.client.delete(name, points_selector=models.PointIdsList(points=added[start : start + WRITE_BATCH]),
                                        wait=True)
        restored = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in before]
        for start in range(0, len(restored), WRITE_BATCH):
            with self.conn.calls("restore query log", name, write=True):
                self.conn.client.upsert(name, points=restored[start : start + WRITE_BATCH], wait=True)
        return f"{len(before)} replaced entries restored, {len(added)} added entries removed"

    def _new_log_dimension(self, queries: list[LabelledQuery]) -> int:
        """A new log takes the data collection's dimension (or the first entry's if there is none)."""
        try:
            return self._layout().dim
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)

    # State -----------------------------------------------------------------------------------

    def state(self, name: str) -> QdrantState:
        _check_name(name, "state collection")
        return QdrantState(self, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


#: Characters Qdrant refuses in collection names (qdrant-client's local mode and the server alike).
_NAME_FORBIDDEN = ("<", ">", ":", '"', "/", "\\", "|", "?", "*", "\x00", "\x1f")


def _check_name(name: str, what: str) -> None:
    """Refuse a name Qdrant would refuse, before anything is written (as the other backends do)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or len(name) > 255
            or any(c in name for c in _NAME_FORBIDDEN)):
        raise InvalidURI(f"{what} name {name!r} is not a valid Qdrant collection name (1-255 characters, none of "
                         f"{' '.join(_NAME_FORBIDDEN[:9])}, NUL or \\x1f)")


def _log_point(query_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, query_id))


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
        return _pick_vector(self.name, self.conn.vectors_config(self.name), None).dim

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def create(self, dimension: int) -> None:
        dimension = check_state_dimension(self.name, dimension)
        if self.exists():
            have = self._dimension()
            if have != dimension:
                raise UnsupportedCollection(f"state collection {self.name!r} holds {have}-d vectors, not {dimension}-d")
            return
        with self.conn.calls("create state collection", self.name, write=True):
            self.conn.client.create_collection(
                self.name, vectors_config=models.VectorParams(size=int(dimension), distance=models.Distance.DOT))
            if self.conn.config.is_server:  # local mode ignores payload indexes (and warns)
                self.conn.client.create_payload_index(self.name, "kind", models.PayloadSchemaType.KEYWORD,
                                                      wait=True)

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        check_state_kind(kind)
        records = list(records)
        if not records:
            return
        keys = [r.key for r in records]
        check_state_keys(self.name, keys)
        dim = self._dimension()
        points = []
        for r in records:
            vec, meta = state_vector(self.name, r, dim), state_meta_json(self.name, r)
            points.append(models.PointStruct(id=self._point(kind, r.key), vector=vec.tolist(),
                                             payload={"kind": kind, "key": r.key, "meta": meta,
                                                      "has_vector": r.vector is not None}))
        for start in range(0, len(points), WRITE_BATCH):
            with self.conn.calls("upsert state", self.name, write=True):
                self.conn.client.upsert(self.name, points=points[start : start + WRITE_BATCH], wait=True)

    @staticmethod
    def _record(p: Any) -> StateRecord:
        payload = p.payload or {}
        vec = p.vector.get("") if isinstance(p.vector, dict) else p.vector
        keep = payload.get("has_vector") and vec is not None
        return StateRecord(str(payload.get("key")), np.asarray(vec, dtype=np.float32) if keep else None,
                           json.loads(payload.get("meta") or "{}"))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        keys = dedupe(keys)
        out: list[StateRecord] = []
        for start in range(0, len(keys), READ_BATCH):
            ids = [self._point(kind, k) for k in keys[start : start + READ_BATCH]]
            with self.conn.calls("retrieve state", self.name):
                points = self.conn.client.retrieve(self.name, ids=ids, with_payload=True, with_vectors=True)
            out += [self._record(p) for p in points if (p.payload or {}).get("kind") == kind]
        order = {k: n for n, k in enumerate(keys)}
        return sorted(out, key=lambda r: order.get(r.key, len(order)))

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
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
        check_state_kind(kind)
        keys = dedupe(keys)
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
    """Create ``config.collection`` and upsert the records (demo and benchmark loader).

    One unnamed vector, or the named vector ``vector=`` names. A local directory is created if
    needed (``open_store`` never creates one). Payloads become the Qdrant payload; documents go in
    it under ``"document"``. Refuses an existing collection and ids Qdrant cannot hold.
    """
    ids = check_ids(ids)
    keys = [_point_id(i) for i in ids]
    impossible = [i for i, k in zip(ids, keys) if k is None]
    if impossible:
        raise InvalidVectors(_impossible(impossible))
    vecs = np.asarray(vectors)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
    vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
    for what, rows in (("payloads", payloads), ("documents", documents)):
        if rows is not None and len(rows) != len(ids):
            raise InvalidVectors(f"{len(rows)} {what} for {len(ids)} ids")
    if config.transport == "local":
        Path(config.location).mkdir(parents=True, exist_ok=True)
        _acquire_local(config.location)  # creates the database files (meta.json)
        _release_local(config.location)
    conn = _Connection(config)
    name = config.collection
    try:
        if conn.exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        params = models.VectorParams(size=vecs.shape[1], distance=METRIC_TO_DISTANCE[metric])
        vector_name = config.option("vector")
        lay = _Layout(vector_name or None, vecs.shape[1], params.distance.value, "float32")
        with conn.calls("create_collection", name, write=True):
            conn.client.create_collection(name, vectors_config={vector_name: params} if vector_name else params)
        batch = 1000 if config.is_server else 4096
        for start in range(0, len(ids), batch):
            points = []
            for j in range(start, min(start + batch, len(ids))):
                payload = dict(payloads[j]) if payloads else {}
                if documents:
                    payload["document"] = documents[j]
                points.append(models.PointStruct(id=keys[j], vector=lay.wrap(vecs[j].tolist()), payload=payload))
            with conn.calls("upsert", name, write=True):
                conn.client.upsert(name, points=points, wait=True)
    finally:
        conn.close()
