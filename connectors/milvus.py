"""Milvus connector: Milvus Lite (a local ``.db``) and Milvus servers, through pymilvus' MilvusClient.

URIs::

    milvus:///abs/file.db?collection=docs        Milvus Lite in this process; the ``.db`` must exist
                                                 (pymilvus starts milvus-lite's engine for it)
    milvus:relative/file.db?collection=docs      (relative path)
    milvus+http://host:19530?collection=docs     a Milvus server (``+https`` for TLS)
    options: vector=<FLOAT_VECTOR field> (detected when the collection has exactly one),
             db_name=<database> (default: the server's default database),
             timeout=<seconds> (the deadline of every call: default 60 s on servers, so a stopped
             server cannot hang a run, none on Milvus Lite; the connect timeout is at most 10 s),
             retry_budget=<seconds> (see connectors._retry)

The token comes from ``MILVUS_TOKEN`` (``user:password`` or an API key), or ``secret_env=NAME`` /
``secret_file=PATH``. A server that refuses it (or needs one) raises AuthenticationFailed; one that
cannot be reached raises ConnectionFailed within the connect timeout.

Write path and its traps (why the code looks the way it does)
------------------------------------------------------------
* A default ``upsert`` replaces the whole row: a vector-only upsert is rejected when the
  collection has other fields and, worse, silently wipes the dynamic fields when it has none.
  ``upsert(partial_update=True)`` merges instead, but only on Milvus Lite and servers >= 2.6.2:
  older servers ignore the flag (it is a new protobuf field) and do a plain upsert -- measured on
  Milvus 2.3.5, where it erased every dynamic field of the row. So the write path is chosen from
  the server version (``describe().details["write_path"]``):

  - ``partial_update``: upsert of primary key + vector with ``partial_update=True``;
  - ``rows``: read the full rows (every field, dynamic fields included), replace the vector and
    upsert them. Each row goes back into the partition it was read from (an upsert into the
    default partition would move it). Field types whose values do not round-trip through
    pymilvus rows (float16 / bfloat16 / binary / int8 vectors, geometry, timestamptz, structs)
    are refused with UnsupportedCollection on this path.

* Auto-id collections are refused (UnsupportedCollection): an upsert there generates new primary
  keys (milvus.io upsert docs; milvus #40099), so the ids users and query logs know would vanish.
* Unknown ids are checked first (UnknownIds, nothing written). Every written chunk is read back
  and compared bit for bit (vectors) and, on the rows path, field by field (WriteFailed).
  A concurrent writer changing a row between our read and our upsert loses that change on the
  rows path (a lost update); the partial path does not have this window.
* Every read uses ``consistency_level="Strong"``: the default (Bounded) misses writes made in the
  last moments -- ours (read-back) and the application's (existence check). On a real server a
  Strong read waits for the next time tick (~0.3 s on Milvus 2.3.5), so reads go in large pages.

Reading
-------
``iter_vectors`` pages by primary key: ``pk > <last pk>`` with the query-iterator flags
(``iterator=True``), which makes every page come back in primary-key order from every engine,
within Milvus' 16,384-row window. This is the protocol of pymilvus' ``query_iterator`` (offset
paging breaks past 16,384 rows on a server), done here because pymilvus 3.0.2's iterator pastes a
VARCHAR cursor between quotes without escaping it: a key with a backslash or a quote makes the next
page a parse error, and a key such as ``x\\u00ff`` would silently skip records. Keys here are
escaped, pages are checked to be strictly increasing (a server that broke the order would fail
loudly instead of skipping or repeating records), and only an empty page ends the scan (the
iterator flags let a server return a short page before the end).

Search
------
``search`` filters excluded ids in the engine (``pk not in [...]``) when there are at most
``_FILTER_IDS`` of them. Above that it searches without a filter, drops excluded hits, and for the
queries left short re-searches with a filter made only of the excluded ids seen near the queries
so far (a few per query), until every query has ``k`` results or the collection is exhausted;
should those grow past ``_FILTER_IDS`` the full list is used. Scores: COSINE and IP distances are
similarities already; L2 distances are squared, so the score is minus the distance.

Query log (a sibling collection, written with the native client as easily as by us)
-------------------------------------------------------------------------------
Primary key ``query_id`` (VARCHAR), one FLOAT_VECTOR field (the query embedding; ``vector`` when we
create it, FLAT / IP index), and the entry's fields as dynamic fields: ``relevant_ids`` (list of int
or str ids, mixed allowed), ``grades`` (list of float aligned with them), ``timestamp`` (unix
seconds), ``split`` ("train" | "val" | "test"); absent fields are simply not written. Scalar or JSON
fields of those names, or a JSON field ``fields`` holding them, are read too. Example::

    client.insert("feedback", [{"query_id": "q-17", "vector": qvec, "relevant_ids": [4, 9],
                                "timestamp": time.time()}])

Appending an existing query_id replaces its entry (upsert of the whole row). Limits (measured,
``_milvus_log.py``): ``query_id`` at most 2,048 bytes of UTF-8 in the logs we create (the key's
VARCHAR max_length: servers count bytes); an entry's dynamic fields at most 65,536 bytes of JSON
(about 8,000 six-digit int ids without grades). Entries over them are refused before any write, and
a failed append is undone (``_log.write_or_put_back``).

State collection
----------------
Primary key ``id`` = ``"<kind>:<key>"`` (VARCHAR), ``kind`` (VARCHAR), ``meta`` (JSON text in a
VARCHAR, at most 65,535 bytes), ``has_vector`` (BOOL) and ``vector`` (FLOAT_VECTOR, FLAT / IP);
vectors round-trip bit for bit; records without a vector store zeros and read back as None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc  # pymilvus' transport; its status codes tell auth failures from unreachable servers
import numpy as np
import orjson  # pymilvus' own JSON encoder: request sizes as pymilvus computes them
from pymilvus import DataType, MilvusClient

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
    check_batch_size,
    check_ids,
    check_state_dimension,
    check_state_kind,
    check_update_ids,
    dedupe,
    pad_results,
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
    check_log_dimension,
    chunks_by_bytes,
    entry_fields,
    entry_from_fields,
    log_entries,
    write_or_put_back,
)
from ._milvus_log import LogSchema
from ._uri import SERVER_CALL_TIMEOUT, StoreConfig

__all__ = ["WRITE_PATHS", "MilvusState", "MilvusStore", "create_collection", "engine_version", "open_store"]

METRIC_FROM_MILVUS: dict[str, Metric] = {"COSINE": "cosine", "IP": "dot", "L2": "l2"}
METRIC_TO_MILVUS = {v: k for k, v in METRIC_FROM_MILVUS.items()}
WRITE_PATHS = ("partial_update", "rows")
#: The first server release whose upsert honours ``partial_update`` (Milvus Lite always does).
PARTIAL_UPDATE_SINCE = (2, 6, 2)
STRONG = "Strong"
#: Milvus caps limit (+ offset) of a query or search at 16,384 rows.
MAX_WINDOW = 16_384
INT64_RANGE = (-(2**63), 2**63)

#: Ids per ``pk in [...]`` expression (existence checks, gets, read-backs).
_ID_CHUNK = 8192
#: Excluded ids up to which a search filters them in the engine in one pass.
_FILTER_IDS = 4096
#: Approximate bytes of vectors per page / write. pymilvus turns every float into a Python float
#: (~32 bytes each, so a page peaks near 8x this in Python objects); each page query costs about a
#: scan on Milvus Lite, so pages of 8 MiB read 100k x 384 1.2-1.3x slower than 16 MiB (measured).
_PAGE_BYTES = 16 * 1024 * 1024
#: Result rows (queries x limit) per search call.
_SEARCH_ROWS = 100_000
#: Rows per insert/upsert call on the rows path (rows may carry large documents and JSON).
_ROWS_PER_UPSERT = 1000
_STATE_META_BYTES = 65_535
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")

#: Field types whose values pymilvus returns in a form its upsert takes back unchanged.
_ROUND_TRIP_TYPES = {
    DataType.BOOL, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.FLOAT,
    DataType.DOUBLE, DataType.VARCHAR, DataType.ARRAY, DataType.JSON, DataType.FLOAT_VECTOR,
    DataType.SPARSE_FLOAT_VECTOR,
}
_AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
_UNREACHABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
#: Milvus error numbers: 1400 not authenticated, 1401 privilege not permitted (merr).
_AUTH_NUMBERS = {1400, 1401}
_BUSY_PHRASES = ("rate limit", "service not ready", "not healthy", "unhealthy", "server is closing",
                 "is stopping", "too many requests")
_AUTH_PHRASES = ("auth check failure", "unauthenticated", "authentication fail", "missing authorization",
                 "permission denied", "privilege not permitted", "not authenticated")

_CLIENT_VERSION = package_version("pymilvus")


def open_store(config: StoreConfig) -> MilvusStore:
    """Connect to Milvus as described by ``config`` (the client connects now; collections lazily)."""
    return MilvusStore(config)


# -- connection ------------------------------------------------------------------------------------


def engine_version(reported: str) -> tuple[int, ...] | None:
    """``(major, minor, patch)`` of the Milvus engine behind a ``get_server_version()`` string.

    Milvus Lite 3.x reports ``milvus_lite-<its own version>`` and supports everything we use: it
    counts as newest. PyPI ``milvus==2.3.5`` reports ``v2.3.5-lite`` although it is a full server,
    so only the leading numbers count. None when the string says nothing usable (the caller then
    takes the path that works everywhere).
    """
    text = reported.strip()
    if text.startswith("milvus_lite"):
        return (99, 0, 0)
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(p or 0) for p in match.groups())


def _rpc_error(exc: BaseException) -> grpc.RpcError | None:
    """The first gRPC error in ``exc``'s chain (pymilvus chains the RpcError). Each exception is
    visited once: pymilvus can leave the chain cyclic (seen with a server killed mid-call), and a
    walk without that guard looped forever."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, grpc.RpcError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _status_code(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code behind a pymilvus exception, if any."""
    rpc = _rpc_error(exc)
    try:
        return rpc.code() if rpc is not None and callable(getattr(rpc, "code", None)) else None
    except Exception:
        return None


class _Connection:
    """The pymilvus client plus what error messages need to say where it points."""

    def __init__(self, config: StoreConfig):
        self.config = config
        # per call; None = no deadline (Milvus Lite runs in this process: it cannot stop answering)
        self.timeout = config.timeout(SERVER_CALL_TIMEOUT if config.is_server else None)
        self.db_name = config.option("db_name") or ""
        if config.is_server:
            parts = urlsplit(config.location)
            if parts.path not in ("", "/"):
                raise InvalidURI(f"{config.redacted()}: Milvus server URIs take no path; name the database "
                                 f"with ?db_name={parts.path.strip('/')}")
            self.where = f"Milvus server {parts.netloc}"
            uri = config.location
        elif config.transport == "memory":
            raise InvalidURI("Milvus has no in-memory mode; use milvus:///path/to/file.db (Milvus Lite)")
        else:
            path = Path(config.location)
            if path.suffix != ".db":
                raise InvalidURI(f"Milvus Lite databases are paths ending in .db (pymilvus starts Milvus Lite "
                                 f"for those only); got {path}")
            if not path.exists():
                # MilvusClient would silently create an empty database here.
                raise CollectionNotFound(f"no Milvus Lite database at {path}, so collection "
                                         f"{config.collection!r} does not exist")
            self.where = f"Milvus Lite {path}"
            uri = str(path)
        self.client = self._connect(uri, min(self.timeout or 10.0, 10.0))
        self._version: str | None = None

    def _connect(self, uri: str, connect_timeout: float) -> MilvusClient:
        try:
            # dedicated: pymilvus shares channels by address|token otherwise, so closing (or the
            # db_name of) one store would leak into another one on the same server.
            return MilvusClient(uri=uri, token=self.config.secret or "", db_name=self.db_name,
                                timeout=connect_timeout, dedicated=True)
        except Exception as exc:  # pymilvus wraps the gRPC error of its Connect call
            if not self.config.is_server and "open local milvus failed" in str(exc).lower():
                # Milvus Lite locks its file for one process; the lock error itself stays in its thread
                raise ConnectionFailed(
                    f"cannot open {self.where}: another process has it open (Milvus Lite admits one process "
                    "per database file: wait for it to finish, or serve the file with `milvus-lite server`), "
                    "or the file is not a Milvus Lite database").retryable(False) from None
            raise self.translate(exc, "connect", self.config.collection) from None

    def translate(self, exc: BaseException, what: str, collection: str, write: bool = False) -> ConnectorError:
        """A connector error for a pymilvus / gRPC exception (the message never holds the token).

        gRPC status codes and Milvus error numbers first; message phrases only as a fallback, and
        "collection not found" before the auth phrases (a collection may be called "auth_log")."""
        code = _status_code(exc)
        text = str(getattr(exc, "message", "") or exc)
        low = text.lower()
        number = getattr(exc, "code", None)
        if code in _AUTH_CODES or number in _AUTH_NUMBERS:
            return self._auth_failed(what, text if code is None else f"{code.name}: {_details(exc) or text}")
        if code in _UNREACHABLE_CODES or number == 2 or "fail connecting" in low:
            return ConnectionFailed(f"{what}: cannot reach {self.where}: {_details(exc) or text}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED or number == 8 or any(p in low for p in _BUSY_PHRASES):
            # rate-limited, or a server still starting / shutting down: worth asking again
            cls = WriteFailed if write else ConnectorError
            return cls(f"{what} on Milvus collection {collection!r} ({self.where}): {text}").retryable()
        if number == 100 or "collection not found" in low or "can't find collection" in low or (
                "collection" in low and "not exist" in low):
            return CollectionNotFound(f"{what}: Milvus collection {collection!r} does not exist in {self.where}")
        if number == 800 or ("database" in low and ("not found" in low or "not exist" in low)):
            return CollectionNotFound(f"{what}: database {self.db_name or 'default'!r} does not exist in "
                                      f"{self.where}, so collection {collection!r} does not exist ({text})")
        if any(phrase in low for phrase in _AUTH_PHRASES):
            return self._auth_failed(what, text)
        cls = WriteFailed if write else ConnectorError
        return cls(f"{what} on Milvus collection {collection!r} ({self.where}) failed: {type(exc).__name__}: {text}")

    def _auth_failed(self, what: str, detail: str) -> AuthenticationFailed:
        hint = ("the server needs a token: set MILVUS_TOKEN (or secret_env / secret_file)" if not self.config.secret
                else "check MILVUS_TOKEN / secret_env / secret_file")
        return AuthenticationFailed(f"{self.where} refused the credentials on {what} ({detail}); {hint}")

    @contextmanager
    def calls(self, what: str, collection: str, *, write: bool = False) -> Iterator[None]:
        """Translate the pymilvus / gRPC exceptions raised by the calls in the block."""
        try:
            yield
        except ConnectorError:
            raise
        except Exception as exc:
            error = self.translate(exc, what, collection, write)
            error.milvus_code = getattr(exc, "code", None)  # type: ignore[attr-defined]
            # not chained: the client's exception text is unredacted (the message carries it, redacted)
            raise error from None

    def exists(self, name: str) -> bool:
        with self.calls("has_collection", name):
            return bool(self.client.has_collection(name, timeout=self.timeout))

    def not_found(self, name: str, what: str = "Milvus collection") -> CollectionNotFound:
        """CollectionNotFound for ``name``, saying so when the database itself is missing (some
        servers answer has_collection=False for an unknown database instead of failing)."""
        if self.db_name:
            try:
                databases = list(self.client.list_databases(timeout=self.timeout))
            except Exception:  # listing databases may need privileges we lack: say less
                databases = [self.db_name]
            if self.db_name not in databases:
                return CollectionNotFound(f"database {self.db_name!r} does not exist in {self.where}, so {what} "
                                          f"{name!r} does not exist")
        return CollectionNotFound(f"{what} {name!r} does not exist in {self.where}")

    def version(self) -> str:
        if self._version is None:
            with self.calls("get_server_version", self.config.collection):
                self._version = str(self.client.get_server_version(timeout=self.timeout))
        return self._version

    def default_write_path(self) -> str:
        engine = engine_version(self.version())
        return "partial_update" if engine is not None and engine >= PARTIAL_UPDATE_SINCE else "rows"

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing must never mask the caller's own error
                pass


#: What Milvus says when a collection is not loaded (error 101; Milvus Lite names the state).
_RELEASED_PHRASES = ("not loaded", "state 'released'", "collection not loaded", "released")


def _released(exc: ConnectorError) -> bool:
    """True when a query/search failed only because the collection is not loaded (any more)."""
    if getattr(exc, "milvus_code", None) == 101:
        return True
    return any(p in str(exc).lower() for p in _RELEASED_PHRASES)


def _details(exc: BaseException) -> str:
    """The gRPC details behind a pymilvus exception ("" if none)."""
    rpc = _rpc_error(exc)
    try:
        return str(rpc.details()) if rpc is not None and callable(getattr(rpc, "details", None)) else ""
    except Exception:
        return ""


def _check_name(name: str, what: str = "collection") -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidURI(f"{what} name {name!r} is not a valid Milvus name (letters, digits and '_', starting "
                         "with a letter or '_', at most 255 characters)")


# -- expressions -------------------------------------------------------------------------------------


def _literal(value: RecordId) -> str:
    """An expression literal for a key. Strings are escaped with the escapes every engine knows
    (Milvus Lite's parser accepts only \\" \\' \\\\ \\n \\r \\t)."""
    if isinstance(value, int):
        return str(value)
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _in(field_name: str, ids: Sequence[RecordId], negate: bool = False) -> str:
    return f"{field_name} {'not in' if negate else 'in'} [{', '.join(_literal(i) for i in ids)}]"


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _float32(rows: Sequence[Any], dim: int) -> np.ndarray:
    # pymilvus hands float32 values back as Python floats: the cast back is exact.
    if len(rows) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def _rows_per_page(dim: int) -> int:
    return max(1, min(MAX_WINDOW, _PAGE_BYTES // (4 * max(dim, 1) + 64)))


# -- collection layout ---------------------------------------------------------------------------------


@dataclass
class _Layout:
    """What a user collection's schema and index say, checked once per store."""

    pk: str
    id_type: str  #: "int" | "str"
    vector: str
    dim: int
    metric: str  #: Milvus metric type: COSINE | IP | L2
    index_type: str
    dynamic: bool
    fields: list[dict[str, Any]]
    #: Manual partitions (None when there is only the default one or a partition key routes rows).
    partitions: list[str] | None = None
    other_vectors: list[str] = field(default_factory=list)

    @property
    def key_type(self) -> type:
        return int if self.id_type == "int" else str

    def valid(self, ids: Iterable[RecordId]) -> list[RecordId]:
        """The ids that can exist in this collection (right type; int64 range)."""
        kind = self.key_type
        return [i for i in ids if isinstance(i, kind) and (kind is str or INT64_RANGE[0] <= i < INT64_RANGE[1])]

    def rows_path_blockers(self) -> list[str]:
        """Fields a full-row rewrite cannot carry back unchanged (see the module docstring)."""
        return [f"{f['name']} ({DataType(f['type']).name})" for f in self.fields
                if f.get("type") not in _ROUND_TRIP_TYPES and not f.get("is_function_output")]

    def function_outputs(self) -> set[str]:
        return {f["name"] for f in self.fields if f.get("is_function_output")}


def _analyse(name: str, desc: Mapping[str, Any], wanted: str | None) -> tuple[str, str, dict[str, Any], list[str]]:
    """``(pk, id_type, vector field, other vector fields)`` of a described collection, or
    UnsupportedCollection saying what is wrong."""
    fields = list(desc.get("fields") or [])
    pks = [f for f in fields if f.get("is_primary")]
    if not pks:
        raise UnsupportedCollection(f"Milvus collection {name!r} has no primary key field")
    pk = pks[0]
    if desc.get("auto_id") or pk.get("auto_id"):
        raise UnsupportedCollection(
            f"Milvus collection {name!r} has an auto_id primary key ({pk['name']!r}): an upsert there generates "
            "new primary keys, so record ids (and the query log's answers) would change; nudge-sync refuses "
            "auto-id collections (copy the data into a collection with explicit ids)")
    if pk["type"] == DataType.INT64:
        id_type = "int"
    elif pk["type"] == DataType.VARCHAR:
        id_type = "str"
    else:
        raise UnsupportedCollection(f"Milvus collection {name!r}: primary key type {DataType(pk['type']).name} "
                                    "is not supported (INT64 or VARCHAR)")
    dense = [f for f in fields if f.get("type") == DataType.FLOAT_VECTOR]
    vectors = [f for f in fields if int(f.get("type", 0)) >= 100 and f.get("type") != DataType.UNKNOWN]
    listing = ", ".join(f"{f['name']} ({DataType(f['type']).name})" for f in vectors) or "none"
    if wanted is not None:
        match = [f for f in vectors if f["name"] == wanted]
        if not match:
            raise UnsupportedCollection(f"Milvus collection {name!r} has no vector field {wanted!r} (option "
                                        f"vector=); its vector fields: {listing}")
        if match[0]["type"] != DataType.FLOAT_VECTOR:
            raise UnsupportedCollection(f"Milvus collection {name!r}: field {wanted!r} is a "
                                        f"{DataType(match[0]['type']).name}; nudge-sync works on FLOAT_VECTOR fields")
        chosen = match[0]
    elif len(dense) == 1:
        chosen = dense[0]
    elif not dense:
        raise UnsupportedCollection(f"Milvus collection {name!r} has no FLOAT_VECTOR field; its vector fields: {listing}")
    else:
        names = ", ".join(f["name"] for f in dense)
        raise UnsupportedCollection(f"Milvus collection {name!r} has {len(dense)} FLOAT_VECTOR fields ({names}); "
                                    "choose one with the URI option vector=NAME")
    others = [f["name"] for f in vectors if f["name"] != chosen["name"]]
    return pk["name"], id_type, chosen, others


# -- the store ---------------------------------------------------------------------------------------


class MilvusStore(VectorStore):
    """One Milvus collection (see the module docstring for the write path and its guarantees).

    ``write_path`` forces ``"partial_update"`` or ``"rows"`` instead of choosing by server version
    (tests exercise both on Milvus Lite; a proxy that hides the engine version may need it).
    """

    def __init__(self, config: StoreConfig, *, write_path: str | None = None):
        _check_name(config.collection)
        if write_path is not None and write_path not in WRITE_PATHS:
            raise InvalidURI(f"write_path {write_path!r} is not one of {WRITE_PATHS}")
        self.config = config
        self.name = config.collection
        self._forced_path = write_path
        self._conn: _Connection | None = _Connection(config)
        self._layout: _Layout | None = None
        #: collections this store saw loaded (see _on_loaded)
        self._loaded: set[str] = set()

    # Plumbing --------------------------------------------------------------------------------

    @property
    def conn(self) -> _Connection:
        if self._conn is None:
            raise ConnectorError(f"the Milvus store for {self.name!r} is closed")
        return self._conn

    @property
    def client(self) -> MilvusClient:
        return self.conn.client

    @contextmanager
    def _calls(self, what: str, *, write: bool = False) -> Iterator[None]:
        try:
            with self.conn.calls(what, self.name, write=write):
                yield
        except CollectionNotFound:
            self._layout = None  # dropped (or re-created) meanwhile
            raise

    @property
    def write_path(self) -> str:
        return self._forced_path or self.conn.default_write_path()

    def layout(self) -> _Layout:
        """Schema, vector field, metric and partitions of the collection; loads it if needed."""
        if self._layout is None:
            self._layout = self._read_layout()
        return self._layout

    def _read_layout(self) -> _Layout:
        if not self.conn.exists(self.name):
            raise self.conn.not_found(self.name)
        t = self.conn.timeout
        with self._calls("describe_collection"):
            desc = self.client.describe_collection(self.name, timeout=t)
        pk, id_type, vec, others = _analyse(self.name, desc, self.config.option("vector"))
        metric, index_type = self._index_of(vec["name"])
        with self._calls("list_partitions"):
            partitions = list(self.client.list_partitions(self.name, timeout=t))
        keyed = any(f.get("is_partition_key") for f in desc["fields"])
        self._ensure_loaded(self.name)
        return _Layout(
            pk=pk, id_type=id_type, vector=vec["name"], dim=int(vec["params"]["dim"]), metric=metric,
            index_type=index_type, dynamic=bool(desc.get("enable_dynamic_field")), fields=list(desc["fields"]),
            partitions=partitions if len(partitions) > 1 and not keyed else None, other_vectors=others,
        )

    def _index_of(self, vector: str) -> tuple[str, str]:
        t = self.conn.timeout
        with self._calls("list_indexes"):
            names = list(self.client.list_indexes(self.name, field_name=vector, timeout=t))
        infos = []
        for index in names:
            with self._calls("describe_index"):
                infos.append(self.client.describe_index(self.name, index, timeout=t) or {})
        infos = [i for i in infos if i.get("field_name", vector) == vector]
        if not infos:
            raise UnsupportedCollection(
                f"Milvus collection {self.name!r}: vector field {vector!r} has no index, so Milvus can neither load "
                "nor search it and its metric is unknown; create one (e.g. index_type AUTOINDEX or FLAT with "
                "metric_type COSINE, IP or L2)")
        metric = str(infos[0].get("metric_type", "")).upper()
        if metric not in METRIC_FROM_MILVUS:
            raise UnsupportedCollection(f"Milvus collection {self.name!r}: the index on {vector!r} uses metric "
                                        f"{metric or '?'}; nudge-sync supports COSINE, IP and L2")
        return metric, str(infos[0].get("index_type", ""))

    def _ensure_loaded(self, name: str) -> None:
        """Queries and searches need a loaded collection: a collection another process created and
        closed is released (Milvus Lite releases everything when its process ends; a server may
        release a collection at any time)."""
        with self.conn.calls("get_load_state", name):
            state = self.client.get_load_state(name, timeout=self.conn.timeout)
        if str(getattr(state.get("state"), "name", state.get("state"))) != "Loaded":
            with self.conn.calls("load_collection", name):
                self.client.load_collection(name, timeout=self.conn.timeout)
        self._loaded.add(name)

    def _on_loaded(self, name: str, what: str, call: Callable[[], Any]) -> Any:
        """``call()`` (a query or search of ``name``) on a loaded collection: loaded before this
        store's first read of it, and loaded again (then retried once) if it was released since."""
        if name not in self._loaded:
            self._ensure_loaded(name)
        try:
            with self.conn.calls(what, name):
                return call()
        except ConnectorError as exc:
            if not _released(exc):
                raise
        self._loaded.discard(name)
        self._ensure_loaded(name)
        with self.conn.calls(what, name):
            return call()

    def _query(self, name: str, expr: str, fields: list[str], *, what: str = "query",
               partition: str | None = None, **extra: Any) -> list[dict[str, Any]]:
        return list(self._on_loaded(name, what, lambda: self.client.query(
            name, filter=expr, output_fields=fields, consistency_level=STRONG, timeout=self.conn.timeout,
            partition_names=[partition] if partition else None, **extra)))

    def _pages(self, name: str, pk: str, fields: list[str], page: int, expr: str = "",
               what: str = "read") -> Iterator[list[dict[str, Any]]]:
        """Every row of ``name`` matching ``expr`` once, in pages ordered by primary key (see the
        module docstring: pymilvus' query_iterator protocol with escaped keys)."""
        page = max(1, min(page, MAX_WINDOW))
        last: RecordId | None = None
        while True:
            parts = [] if last is None else [f"{pk} > {_literal(last)}"]
            if expr:
                parts.append(f"({expr})")
            rows = self._query(name, " and ".join(parts), fields, what=what, limit=page,
                               iterator="True", reduce_stop_for_best="True")
            keys = [r[pk] for r in rows]
            if not _increasing(last, keys):
                raise ConnectorError(f"{what} of Milvus collection {name!r}: the engine returned a page out of "
                                     "primary-key order, so paging could skip or repeat records; nothing was written")
            if not rows:  # a short page is not the end: with reduce_stop_for_best a server may cut pages early
                return
            yield rows
            last = keys[-1]

    def _fetch(self, ids: Sequence[RecordId], fields: list[str], what: str,
               partition: str | None = None) -> dict[RecordId, dict[str, Any]]:
        """Rows by primary key (unknown ids absent), in ``pk in [...]`` chunks."""
        lay = self.layout()
        out: dict[RecordId, dict[str, Any]] = {}
        for part in _chunks(len(ids), _ID_CHUNK):
            rows = self._query(self.name, _in(lay.pk, ids[part]), fields, what=what, partition=partition)
            out.update((r[lay.pk], r) for r in rows)
        return out

    # VectorStore -----------------------------------------------------------------------------

    def describe(self) -> CollectionInfo:
        lay = self.layout()
        count = self._count(self.name)
        path = self.write_path
        details: dict[str, Any] = {
            "primary_key": lay.pk,
            "metric_type": lay.metric,
            "index_type": lay.index_type,
            "write_path": path,
            "write": ("upsert(partial_update=True) of primary key + vector" if path == "partial_update"
                      else "read full rows, replace the vector, upsert them into their partition"),
            "consistency_level": STRONG,
            "dynamic_fields": lay.dynamic,
            "other_vector_fields": lay.other_vectors,
            "partitions": lay.partitions or ["(default / partition key)"],
            "vectors_round_trip": "exact",  # FLOAT_VECTOR values are stored as written, any metric
            "client_version": _CLIENT_VERSION,
            "db_name": self.conn.db_name or "default",
        }
        if path == "rows" and lay.rows_path_blockers():
            details["rows_path_blockers"] = lay.rows_path_blockers()
        return CollectionInfo(
            backend="milvus", collection=self.name, dimension=lay.dim, metric=METRIC_FROM_MILVUS[lay.metric],
            id_type=lay.id_type, vector_name=lay.vector, count=count, server_version=self.conn.version(),
            details=details,
        )

    def _count(self, name: str) -> int:
        rows = self._query(name, "", ["count(*)"], what="count")
        return int(rows[0]["count(*)"]) if rows else 0

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        batch_size = check_batch_size(batch_size)
        lay = self.layout()
        # Large pages: a Strong read costs a time tick on a server, whatever its size.
        page = max(min(batch_size, MAX_WINDOW), _rows_per_page(lay.dim))
        for rows in self._pages(self.name, lay.pk, [lay.pk, lay.vector], page, what="read vectors"):
            for part in _chunks(len(rows), batch_size):
                chunk = rows[part]
                yield [r[lay.pk] for r in chunk], _float32([r[lay.vector] for r in chunk], lay.dim)

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        lay = self.layout()
        wanted = dedupe(check_ids(ids))
        got = self._fetch(lay.valid(wanted), [lay.pk, lay.vector], "get vectors")
        found = [i for i in wanted if i in got]
        missing = [i for i in wanted if i not in got]
        return found, _float32([got[i][lay.vector] for i in found], lay.dim), missing

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        lay = self.layout()
        ids = check_update_ids(ids, self.name)
        vecs = as_vectors(vectors, lay.dim, n=len(ids))
        if not ids:
            return 0
        path = self.write_path
        if path == "rows" and lay.rows_path_blockers():
            raise UnsupportedCollection(
                f"Milvus collection {self.name!r} on {self.conn.where} ({self.conn.version()}) needs the full-row "
                f"write path (upsert without partial_update), which cannot carry back {lay.rows_path_blockers()} "
                f"unchanged; a Milvus server >= {'.'.join(map(str, PARTIAL_UPDATE_SINCE))} writes vectors alone")
        placement = self._locate(ids)
        unknown = [i for i in ids if i not in placement]
        if unknown:
            raise UnknownIds(self.name, unknown)
        groups: dict[str | None, list[int]] = {}
        for j, i in enumerate(ids):
            groups.setdefault(placement[i], []).append(j)
        # Write every chunk, then verify everything in large read-backs: on a server each Strong
        # read waits for a time tick, so reading back per chunk would double the cost of a write.
        step = _ROWS_PER_UPSERT if path == "rows" else max(1, min(_ID_CHUNK, _rows_per_page(lay.dim)))
        prints: dict[RecordId, str] = {}
        for partition, positions in groups.items():
            for part in _chunks(len(positions), step):
                sel = positions[part]
                chunk_ids, chunk_vecs = [ids[j] for j in sel], vecs[sel]
                if path == "partial_update":
                    rows = [{lay.pk: i, lay.vector: v} for i, v in zip(chunk_ids, chunk_vecs.tolist())]
                    self._upsert(rows, partition, partial=True)
                else:
                    prints.update(self._rewrite_rows(chunk_ids, chunk_vecs, partition))
        if verify or path == "rows":  # the full-row rewrite always re-checks the fields it carried back
            for partition, positions in groups.items():
                self._verify([ids[j] for j in positions], vecs[positions], partition, prints if path == "rows" else None)
        return len(ids)

    def _locate(self, ids: list[RecordId]) -> dict[RecordId, str | None]:
        """Existence check: id -> its manual partition (None when partitions do not matter)."""
        lay = self.layout()
        keys = lay.valid(ids)
        if lay.partitions is None:
            return dict.fromkeys(self._fetch(keys, [lay.pk], "existence check"))
        found: dict[RecordId, str | None] = {}
        for partition in lay.partitions:
            for key in self._fetch(keys, [lay.pk], "existence check", partition=partition):
                found.setdefault(key, partition)
        return found

    def _rewrite_rows(self, ids: list[RecordId], vecs: np.ndarray, partition: str | None) -> dict[RecordId, str]:
        """The rows path for one chunk: read the full rows, replace the vector, upsert them back.
        Returns a fingerprint of every other field per id, for the read-back check."""
        lay = self.layout()
        current = self._fetch(ids, ["*"], "read full rows", partition=partition)
        vanished = [i for i in ids if i not in current]
        if vanished:
            raise WriteFailed(f"{len(vanished)} record(s) of {self.name!r} vanished before the update (deleted "
                              f"concurrently?): {vanished[:10]}; nothing was written for them")
        skip = lay.function_outputs()  # the server computes those from their inputs
        rows = []
        for i, v in zip(ids, vecs.tolist()):
            row = {k: val for k, val in current[i].items() if k not in skip}
            row[lay.vector] = v
            rows.append(row)
        self._upsert(rows, partition, partial=False)
        return {i: _fingerprint(current[i], lay.vector, skip) for i in ids}

    def _upsert(self, rows: list[dict[str, Any]], partition: str | None, *, partial: bool) -> None:
        extra = {"partial_update": True} if partial else {}
        with self._calls("upsert", write=True):
            res = self.client.upsert(self.name, rows, partition_name=partition or "", timeout=self.conn.timeout,
                                     **extra)
        count = res.get("upsert_count") if isinstance(res, Mapping) else None
        if count is not None and int(count) != len(rows):
            raise WriteFailed(f"upsert into {self.name!r} wrote {count} of {len(rows)} rows")

    def _verify(self, ids: list[RecordId], vecs: np.ndarray, partition: str | None,
                prints: Mapping[RecordId, str] | None) -> None:
        """Read the written records back (Strong): each present, holding exactly the written vector
        and, after a full-row rewrite, every other field as it was read (``prints``)."""
        lay = self.layout()
        fields = ["*"] if prints is not None else [lay.pk, lay.vector]
        back = self._fetch(ids, fields, "read-back", partition=partition)
        bad = [i for i, v in zip(ids, vecs) if i not in back
               or not np.array_equal(np.asarray(back[i][lay.vector], dtype=np.float32), v)]
        if bad:
            raise WriteFailed(f"{len(bad)} record(s) of {self.name!r} do not hold the written vector after the upsert "
                              f"(deleted or changed concurrently?): {bad[:10]}")
        if prints is not None:
            skip = lay.function_outputs()
            changed = [i for i in ids if _fingerprint(back[i], lay.vector, skip) != prints[i]]
            if changed:
                raise WriteFailed(f"{len(changed)} record(s) of {self.name!r} read back with other fields changed "
                                  f"after the full-row upsert (changed concurrently?): {changed[:10]}")

    # Search ------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        lay = self.layout()
        qs = as_vectors(queries, lay.dim, what="queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidVectors(f"k must be a non-negative int, got {k!r}")
        k = int(k)
        if k > MAX_WINDOW:
            raise InvalidVectors(f"k={k} is larger than Milvus' search window of {MAX_WINDOW:,} results")
        excluded = set(lay.valid(dedupe(check_ids(list(exclude)))))
        rows: list[list[tuple[RecordId, float]]] = [[] for _ in range(len(qs))]
        if k == 0 or len(qs) == 0:
            return pad_results(rows, k)
        if len(excluded) <= _FILTER_IDS:
            for qi, hits in zip(range(len(qs)), self._search(qs, k, sorted(excluded, key=str))):
                rows[qi] = hits
            return pad_results(rows, k)
        return pad_results(self._search_excluding_many(qs, k, excluded), k)

    def _search_excluding_many(self, qs: np.ndarray, k: int, excluded: set[RecordId]) -> list[list[tuple[RecordId, float]]]:
        """Over-fetch, drop excluded hits, re-search the short queries with a filter of the excluded
        ids met so far (see the module docstring). A query is re-searched only when more than
        ``n - k`` of its ``n`` hits were excluded ids not yet in the filter, so the filter grows every
        round and the loop ends (at the latest with the full list)."""
        rows: list[list[tuple[RecordId, float]]] = [[] for _ in range(len(qs))]
        n = min(MAX_WINDOW, k + min(len(excluded), max(k, 64)))
        met: set[RecordId] = set()
        todo = list(range(len(qs)))
        while todo:
            if len(met) > _FILTER_IDS:  # neighbourhoods full of excluded ids: filter them all at once
                met = excluded
            hits_per_query = self._search(qs[todo], n, sorted(met, key=str))
            again = []
            for qi, hits in zip(todo, hits_per_query):
                rows[qi] = [h for h in hits if h[0] not in excluded]
                if len(rows[qi]) < k and len(hits) == n and met is not excluded:
                    met |= {h[0] for h in hits if h[0] in excluded}
                    again.append(qi)
            todo, n = again, min(MAX_WINDOW, 2 * n)
        return rows

    def _search(self, qs: np.ndarray, limit: int, excluded: list[RecordId]) -> list[list[tuple[RecordId, float]]]:
        lay = self.layout()
        expr = _in(lay.pk, excluded, negate=True) if excluded else ""
        negate = lay.metric == "L2"  # squared distance -> similarity
        out: list[list[tuple[RecordId, float]]] = []
        per_call = max(1, min(1024, _SEARCH_ROWS // max(limit, 1)))
        for part in _chunks(len(qs), per_call):
            with self._calls("search"):
                res = self._on_loaded(self.name, "search", lambda: self.client.search(
                    self.name, data=qs[part].tolist(), limit=limit, filter=expr, anns_field=lay.vector,
                    output_fields=[lay.pk], search_params={"metric_type": lay.metric},
                    consistency_level=STRONG, timeout=self.conn.timeout))
            for hits in res:
                out.append([(_hit_id(h, lay.pk), -float(h["distance"]) if negate else float(h["distance"]))
                            for h in hits])
        return out

    # Query log -------------------------------------------------------------------------------

    def log_exists(self, name: str) -> bool:
        _check_name(name, "query log")
        return self.conn.exists(name)

    def _log_schema(self, name: str) -> LogSchema:
        with self.conn.calls("describe query log", name):
            desc = self.client.describe_collection(name, timeout=self.conn.timeout)
        return LogSchema.from_description(name, desc)

    def _log_layout(self, name: str) -> tuple[str, str, int]:
        """``(primary key, vector field, dimension)`` of a query log collection."""
        schema = self._log_schema(name)
        return schema.pk, schema.vector, schema.dim

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        _check_name(name, "query log")
        batch_size = check_batch_size(batch_size)
        if not self.conn.exists(name):
            raise self.conn.not_found(name, "query log")
        pk, vec, dim = self._log_layout(name)
        self._ensure_loaded(name)
        for rows in self._pages(name, pk, ["*"], max(batch_size, _rows_per_page(dim)), what="read query log"):
            for row in rows:
                yield _entry_from_row(name, row, pk, vec)

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        queries = log_entries(queries, name)
        if not queries:
            return 0
        _check_name(name, "query log")
        step = check_batch_size(_ROWS_PER_UPSERT if batch_size is None else batch_size)
        exists = self.conn.exists(name)
        schema = self._log_schema(name) if exists else LogSchema.ours(self._new_log_dimension(queries))
        check_log_dimension(name, queries, schema.dim)
        rows = []
        for n, q in enumerate(queries):
            fields = {k: val for k, val in entry_fields(q, name).items() if val is not None}
            row = {**fields, schema.pk: q.query_id, schema.vector: q.vector.tolist()}
            schema.check(name, n, q, row)
            rows.append(row)
        keys = [q.query_id for q in queries]
        before = self._log_rows(name, schema, keys) if exists else []
        sizes = [len(orjson.dumps(row)) for row in rows]

        def upsert(part: slice) -> Callable[[], None]:
            def write() -> None:
                with self.conn.calls("upsert query log", name, write=True):
                    self.client.upsert(name, rows[part], timeout=self.conn.timeout)
            return write

        writes = [] if exists else [lambda: self._create_keyed(name, "query_id", schema.dim, {}, dynamic=True)]
        writes += [upsert(part) for part in chunks_by_bytes(sizes, step, _PAGE_BYTES)]
        write_or_put_back(name, writes, lambda: self._put_log_back(name, schema, exists, keys, before))
        return len(rows)

    def _log_rows(self, name: str, schema: LogSchema, keys: list[str]) -> list[dict[str, Any]]:
        """The log's rows among ``keys`` as they are now (every field), to put back after a failed append."""
        self._ensure_loaded(name)
        found: list[dict[str, Any]] = []
        for part in _chunks(len(keys), _ID_CHUNK):
            found += self._query(name, _in(schema.pk, keys[part]), ["*"], what="read query log")
        return found

    def _put_log_back(self, name: str, schema: LogSchema, existed: bool, keys: list[str],
                      before: list[dict[str, Any]]) -> str:
        """Undo an append: drop a log it created, else delete the rows it added and rewrite those it
        replaced with what they held."""
        if not existed:
            with self.conn.calls("drop query log", name, write=True):
                self.client.drop_collection(name, timeout=self.conn.timeout)
            return "the log this append created was removed"
        kept = {row[schema.pk] for row in before}
        added = [k for k in keys if k not in kept]
        for part in _chunks(len(added), _ID_CHUNK):
            with self.conn.calls("delete from query log", name, write=True):
                self.client.delete(name, filter=_in(schema.pk, added[part]), timeout=self.conn.timeout)
        for part in _chunks(len(before), _ROWS_PER_UPSERT):
            with self.conn.calls("restore query log", name, write=True):
                self.client.upsert(name, before[part], timeout=self.conn.timeout)
        return f"{len(before)} replaced entries restored, {len(added)} added entries removed"

    def _new_log_dimension(self, queries: list[LabelledQuery]) -> int:
        try:
            return self.layout().dim
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)

    def _create_keyed(self, name: str, key: str, dim: int, extra: Mapping[str, Any], *, dynamic: bool,
                      description: str = "") -> None:
        """A collection with a VARCHAR key and a FLAT/IP vector ``vector`` (query log, state)."""
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=dynamic, description=description)
        schema.add_field(key, DataType.VARCHAR, is_primary=True, max_length=2048)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for field_name, (dtype, params) in extra.items():
            schema.add_field(field_name, dtype, **params)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        try:
            with self.conn.calls("create collection", name, write=True):
                self.client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG,
                                              timeout=self.conn.timeout)
        except WriteFailed:
            if not self.conn.exists(name):  # else: created concurrently, fine
                raise
        self._ensure_loaded(name)

    # State -----------------------------------------------------------------------------------

    def state(self, name: str) -> MilvusState:
        _check_name(name, "state collection")
        return MilvusState(self, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._layout = None
        if conn is not None:
            conn.close()


def _fingerprint(row: Mapping[str, Any], vector: str, skip: set[str]) -> str:
    """Everything of a row but the target vector, canonically serialised (sparse vectors have int
    keys, which JSON turns into strings on both sides alike)."""
    rest = {k: v for k, v in row.items() if k != vector and k not in skip}
    return json.dumps(rest, sort_keys=True, ensure_ascii=False, default=repr)


def _increasing(last: RecordId | None, keys: list[RecordId]) -> bool:
    """Keys strictly increasing, and above the previous page's last key."""
    prev = last
    for key in keys:
        if prev is not None and not key > prev:  # type: ignore[operator]
            return False
        prev = key
    return True


def _hit_id(hit: Mapping[str, Any], pk: str) -> RecordId:
    """A search hit's primary key: pymilvus names it after the field (Milvus Lite) or "id" (servers)."""
    value = getattr(hit, "id", None)
    if value is None:
        value = hit.get(pk, hit.get("id"))
    return value


def _entry_from_row(log: str, row: Mapping[str, Any], pk: str, vec: str) -> LabelledQuery:
    """One log entry from a row: dynamic / scalar fields, or a JSON field ``fields`` holding them."""
    fields = row.get("fields") if isinstance(row.get("fields"), Mapping) else row
    qid = row[pk]
    return entry_from_fields(log, qid if isinstance(qid, str) else str(qid), np.asarray(row[vec], dtype=np.float32),
                             fields)


# -- state collection --------------------------------------------------------------------------------


class MilvusState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    KEY = "id"
    max_meta_bytes = _STATE_META_BYTES

    def __init__(self, store: MilvusStore, name: str):
        self.store = store
        self.name = name

    @property
    def conn(self) -> _Connection:
        return self.store.conn

    def _ids(self, kind: str, keys: Iterable[str]) -> list[str]:
        out = []
        for key in keys:
            if not isinstance(key, str):
                raise InvalidVectors(f"state {self.name!r}: key {key!r} must be a str")
            out.append(f"{kind}:{key}")
        return dedupe(out)

    def _dimension(self) -> int:
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where} "
                                     "(call create(dimension) first)")
        return self.store._log_layout(self.name)[2]

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def create(self, dimension: int) -> None:
        dimension = check_state_dimension(self.name, dimension)
        if self.exists():
            have = self._dimension()
            if have != dimension:
                raise UnsupportedCollection(f"state collection {self.name!r} holds {have}-d vectors, not {dimension}-d")
            self.store._ensure_loaded(self.name)
            return
        self.store._create_keyed(
            self.name, self.KEY, int(dimension),
            {"kind": (DataType.VARCHAR, {"max_length": 256}),
             "meta": (DataType.VARCHAR, {"max_length": _STATE_META_BYTES}),
             "has_vector": (DataType.BOOL, {})},
            dynamic=False, description=f"nudge-sync state (dimension {int(dimension)})")

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        check_state_kind(kind)
        records = list(records)
        if not records:
            return
        keys = [r.key for r in records]
        ids = self._ids(kind, keys)
        if len(ids) != len(keys):
            raise InvalidVectors(f"state {self.name!r}: duplicate key(s) in one put")
        dim = self._dimension()
        rows = []
        for r, rid in zip(records, ids):
            vec = state_vector(self.name, r, dim)
            text = state_meta_json(self.name, r, ensure_ascii=False)  # the size limit counts UTF-8 bytes
            if len(text.encode("utf-8")) > _STATE_META_BYTES:
                raise InvalidVectors(f"state {self.name!r} key {r.key!r}: meta is {len(text.encode())} bytes of JSON; "
                                     f"the Milvus state collection holds at most {_STATE_META_BYTES}")
            rows.append({self.KEY: rid, "vector": vec.tolist(), "kind": kind, "meta": text,
                         "has_vector": r.vector is not None})
        for part in _chunks(len(rows), max(1, min(_ROWS_PER_UPSERT, _rows_per_page(dim)))):
            with self.conn.calls("upsert state", self.name, write=True):
                self.store.client.upsert(self.name, rows[part], timeout=self.conn.timeout)

    @staticmethod
    def _record(row: Mapping[str, Any]) -> StateRecord:
        key = str(row[MilvusState.KEY]).split(":", 1)[1]
        vec = np.asarray(row["vector"], dtype=np.float32) if row["has_vector"] else None
        return StateRecord(key, vec, json.loads(row["meta"]))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        ids = self._ids(kind, keys)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        out: list[StateRecord] = []
        for part in _chunks(len(ids), _ID_CHUNK):
            rows = self.store._query(self.name, _in(self.KEY, ids[part]), [self.KEY, "vector", "meta", "has_vector"],
                                     what="get state")
            out.extend(self._record(r) for r in rows)
        return out

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        if not self.exists():
            raise CollectionNotFound(f"state collection {self.name!r} does not exist in {self.conn.where}")
        fields = [self.KEY, "vector", "meta", "has_vector"]
        for rows in self.store._pages(self.name, self.KEY, fields, batch_size, expr=f"kind == {_literal(kind)}",
                                      what="scan state"):
            yield [self._record(r) for r in rows]

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        ids = self._ids(kind, keys)
        if not ids or not self.exists():
            return
        for part in _chunks(len(ids), _ID_CHUNK):
            with self.conn.calls("delete state", self.name, write=True):
                self.store.client.delete(self.name, filter=_in(self.KEY, ids[part]), timeout=self.conn.timeout)

    def drop(self) -> None:
        if self.exists():
            with self.conn.calls("drop state collection", self.name, write=True):
                self.store.client.drop_collection(self.name, timeout=self.conn.timeout)


# -- loader ------------------------------------------------------------------------------------------


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create ``config.collection`` and insert the records (demo and benchmark loader).

    Schema: primary key ``id`` (INT64 when every id is an int, else VARCHAR), ``vector``
    (FLOAT_VECTOR; FLAT index up to 100,000 records -- exact -- AUTOINDEX above), ``document``
    (VARCHAR, when documents are given; None becomes ""), payload keys as dynamic fields; Strong
    consistency. A Milvus Lite ``.db`` is created if needed (``open_store`` never creates one).
    """
    _check_name(config.collection)
    ids = check_ids(ids)
    vecs = np.asarray(vectors)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
    vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
    kinds = {type(i) for i in ids}
    if len(kinds) > 1:
        raise InvalidVectors("Milvus primary keys are all int or all str; got a mix")
    if len(set(ids)) != len(ids):
        raise InvalidVectors(f"duplicate ids in {config.collection!r}")
    if config.transport == "local":
        path = Path(config.location)
        if path.suffix != ".db":
            raise InvalidURI(f"Milvus Lite databases are paths ending in .db; got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            MilvusClient(str(path)).close()  # creates the Milvus Lite database
    conn = _Connection(config)
    name = config.collection
    try:
        if conn.exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        client = conn.client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        if kinds == {str}:
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
        else:
            schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vecs.shape[1])
        if documents is not None:
            schema.add_field("document", DataType.VARCHAR, max_length=65_535)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="FLAT" if len(ids) <= 100_000 else "AUTOINDEX",
                        metric_type=METRIC_TO_MILVUS[metric])
        with conn.calls("create_collection", name, write=True):
            client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG,
                                     timeout=conn.timeout)
        step = max(1, min(5000, _rows_per_page(vecs.shape[1])))
        for part in _chunks(len(ids), step):
            rows = []
            for j in range(part.start, part.stop):
                row = dict(payloads[j]) if payloads else {}
                row.update(id=ids[j], vector=vecs[j].tolist())
                if documents is not None:
                    row["document"] = documents[j] or ""
                rows.append(row)
            with conn.calls("insert", name, write=True):
                client.insert(name, rows, timeout=conn.timeout)
    finally:
        conn.close()
