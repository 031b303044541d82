"""Chroma connector: a persistent directory (``chromadb.PersistentClient``) or a server (``chroma run``).

URIs::

    chroma:///abs/dir?collection=docs                 PersistentClient(path=/abs/dir); the directory
                                                      must already hold a Chroma database
    chroma+http://host:8000?collection=docs           HttpClient (``+https`` for TLS; a path prefix
                                                      such as ``https://h/chroma`` is kept)
    options: tenant, database (default_tenant / default_database), timeout (seconds per request;
             default 60 on servers, so a stopped server cannot hang a run), retry_budget (seconds,
             see connectors._retry), auth = bearer (default) | x-chroma-token | basic

Credentials come from ``CHROMA_AUTH_TOKEN`` (or ``secret_env=NAME`` / ``secret_file=PATH``) and
are sent on every request: ``auth=bearer`` -> ``Authorization: Bearer <secret>``,
``auth=x-chroma-token`` -> ``X-Chroma-Token: <secret>``, ``auth=basic`` -> ``Authorization: Basic
base64(<secret>)`` with the secret ``user:password`` (or the password alone when the URI carries the
user: ``chroma+https://alice@host``). Note: the ``chroma run`` server of chromadb 1.x enforces no
authentication at all (its CLI wires a no-op authenticator; ``CHROMA_SERVER_AUTHN_*`` only configured
the pre-1.0 Python server), so credentials matter only behind an auth proxy or on Chroma Cloud.

Write path and its traps (why the code looks the way it does)
------------------------------------------------------------
* Vectors are written ONLY with ``collection.update(ids=..., embeddings=...)``. ``documents=``,
  ``metadatas=``, ``images=`` and ``uris=`` are never passed: "If documents are supplied without
  corresponding embeddings, the embeddings will be recomputed with the collection's embedding
  function" (Chroma docs, update-data) -- the hughpyle/keep v0.56.1 incident, where a
  ``documents=``-only update silently replaced 768-d vectors by 384-d MiniLM ones. Collections are
  opened with ``embedding_function=None``, but that alone is NOT a guarantee: chromadb rebuilds the
  embedding function persisted in the collection's configuration/schema and would still call it.
  The guarantee is that every write carries ``embeddings`` and every query ``query_embeddings``, so
  the client never reaches its embedding step (tests/contract/test_chroma_specific.py proves it with
  a tripwire embedding function).
* ``update`` silently ignores unknown ids ("Unknown ids are logged and ignored") and ``get(ids=)``
  silently drops them and returns rows in storage order, so existence is checked first (UnknownIds,
  nothing written), and every written chunk is read back and compared bit-exactly (WriteFailed),
  which also catches a record deleted by someone else between the check and the write.
* Batches are capped by the server (``client.get_max_batch_size()``, 5,461 on our builds; chroma
  #1049 #1079 #1298 #3812) and an HTTP body by ``max_payload_size_bytes`` (40 MiB by default), so
  writes are chunked by both. Throughput barely depends on the chunk size (HNSW updates dominate:
  ~300 vectors/s at 384-d, ~5,000/s at 16-d on our machines), so the largest allowed chunk is used.
* Chroma has no "id not in" filter for kNN queries: exclusion search over-fetches
  (k + excluded ids, bounded by the collection size), drops excluded ids, and only re-queries, with a
  growing window, the queries that still lack k results; queries go in batches bounded by rows.
* Metric: ``configuration["hnsw"|"spann"]["space"]`` (1.x), else the schema's vector index, else
  legacy ``metadata["hnsw:space"]``, else Chroma's default ``l2``. Chroma returns DISTANCES:
  cosine -> 1 - d (cosine similarity), ip -> 1 - d (inner product), l2 -> -d (hnswlib's l2 is the
  squared distance already). Cosine collections keep the vectors' norms but hand back a copy about
  one float32 ulp (of the norm) off what was written, and writing that copy back drifts again: the
  read-back check is tolerant there (1e-6 x norm) and ``describe().details["vectors_round_trip"]``
  says so; ip/l2 collections round-trip bit-exactly.
* Ids are always ``str`` (``id_type="str"``); an int id can never exist in Chroma.
* Reading: ``get(limit, offset, include=["embeddings"])`` pages in storage order, which updates and
  upserts keep and new records extend. A delete before the cursor would shift the pages (one record
  skipped), so each page re-reads the last id of the previous one and the scan fails loudly if it
  moved instead of silently skipping or repeating a record. Memory is bounded by ``batch_size``.
* The HNSW index grows with every update (deletes/updates only mark elements, chroma #2594 #2963;
  hnswlib #303: an update is "several times more expensive than adding"); see the README caveats.

Query log (a sibling collection written with the native client as easily as by us)
-------------------------------------------------------------------------------
One record per labelled query: record id = ``query_id``; embedding = the query vector; metadata:

* ``relevant_ids``: list of str (or of int) -- the ids of the relevant records (a single id may be
  given as a plain str/int). Lists of mixed str/int ids, and entries whose ids and grades together
  pass :data:`LIST_ELEMENTS` (4,096) elements, are stored as JSON text in ``relevant_ids_json`` and
  ``grades_json`` instead, which then win: Chroma lists must hold one type, and a record with more
  than 5,461 list elements is accepted by ``upsert`` and then makes the whole collection unreadable
  (measured on chromadb 1.5.9). An entry's metadata may take at most 16 MiB as JSON
  (``_log.MAX_ENTRY_BYTES``); requests are split to stay under a server's 40 MiB body limit.
* ``grades``: list of float aligned with ``relevant_ids`` (absent = all 1).
* ``timestamp``: float unix seconds;  ``split``: "train" | "val" | "test" (absent = hash split).

Example (native client): ``log.upsert(ids=["q-17"], embeddings=[qvec], metadatas=[{"relevant_ids":
["doc-4", "doc-9"], "timestamp": time.time()}])``. Appending an existing query_id replaces it.
We write all six fields, ``None`` for absent ones, because Chroma merges metadata on upsert and
because of chroma#7594 (``delete_collection`` leaves list-valued metadata on disk, and new records
that reuse the internal row ids inherit it); applications should do the same.

State collection
----------------
Record id ``"<kind>:<key>"``; metadata ``{"kind", "key", "meta": JSON text, "has_vector": bool}``;
space ``ip`` (never normalised) so vectors round-trip bit-exactly; records without a vector store
zeros and read back as ``None``. The collection metadata records ``nudge_sync_state`` and its
``dimension``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb  # a missing chromadb becomes MissingDependency in _uri.open_store
import chromadb.errors as chroma_errors
import httpx  # chromadb's own HTTP client library
import numpy as np

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
from ._uri import SERVER_CALL_TIMEOUT, StoreConfig

__all__ = ["ChromaStore", "ChromaState", "auth_headers", "create_collection", "open_store"]

SPACE_TO_METRIC: dict[str, Metric] = {"cosine": "cosine", "ip": "dot", "l2": "l2"}
AUTH_MODES = ("bearer", "x-chroma-token", "basic")
LOG_SPACE = "ip"
STATE_SPACE = "ip"

#: Bytes of embeddings per HTTP request; ``chroma run`` rejects bodies over 40 MiB by default and
#: chromadb sends float32 as base64 (~5.4 bytes per value).
_PAYLOAD_BUDGET = 24 * 1024 * 1024
#: Result rows (query x n_results) per ``query`` call, to bound memory of a search batch.
_QUERY_ROWS = 200_000
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_LOG_FIELDS = ("relevant_ids", "relevant_ids_json", "grades", "grades_json", "timestamp", "split")
#: List elements (all list-valued metadata of one record together) Chroma stores natively: a record
#: with more is accepted by ``upsert`` and then breaks the collection for good ("Error in compaction:
#: Failed to apply logs to the metadata segment" on every later read). Measured on chromadb 1.5.9:
#: 5,461 elements work, 5,462 break it (32,766 SQLite variables / 6 per element). Longer lists are
#: kept as JSON text, with a margin below the measured edge.
LIST_ELEMENTS = 4096
#: What Chroma says about a collection holding such a record, and what the user can do about it.
_BROKEN_SIGN = "Failed to apply logs to the metadata segment"
_BROKEN_HINT = ("; Chroma cannot index a record of this collection and no longer reads it (a record with more "
                "than 5,461 list elements in its metadata does that, e.g. a log entry written by nudge-sync "
                "before it kept long lists as JSON text): delete the collection and write it again")


def open_store(config: StoreConfig) -> ChromaStore:
    """Connect to Chroma as described by ``config`` (the client connects now; collections lazily)."""
    return ChromaStore(config)


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create ``config.collection`` and add the records (demo and benchmark loader).

    A persistent directory is created if needed (``open_store`` never creates one). Payloads become
    Chroma metadata, documents Chroma documents; the collection has no embedding function.
    """
    name = config.collection
    _check_name(name)
    if config.transport not in ("memory", "http", "https"):
        path = Path(config.location)
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "chroma.sqlite3").exists():
            chromadb.PersistentClient(path=str(path)).heartbeat()  # initialises the database files
    conn = _Connection(config)
    try:
        if conn.collection_exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        ids = check_ids(ids)
        if any(not isinstance(i, str) for i in ids):
            raise InvalidVectors("Chroma ids are strings; got int ids")
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(ids):
            raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
        vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
        space = {v: k for k, v in SPACE_TO_METRIC.items()}[metric]
        with conn.calls("create_collection", name, write=True):
            coll = conn.client.create_collection(name, embedding_function=None,
                                                 configuration={"hnsw": {"space": space}})
        for part in _chunks(len(ids), conn.rows_per_write(vecs.shape[1])):
            with conn.calls("add", name, write=True):
                coll.add(ids=ids[part], embeddings=vecs[part],
                         metadatas=[dict(p) for p in payloads[part]] if payloads else None,
                         documents=list(documents[part]) if documents else None)
    finally:
        conn.close()


# -- connection ------------------------------------------------------------------------------------


def auth_headers(auth: str | None, secret: str | None, user: str | None = None) -> dict[str, str]:
    """HTTP headers carrying ``secret`` for the ``auth`` mode (None = bearer when there is a secret).

    Error messages never contain the secret.
    """
    mode = (auth or "bearer").strip().lower()
    if mode not in AUTH_MODES:
        raise InvalidURI(f"option auth={auth!r} is not one of {list(AUTH_MODES)}")
    if secret is None:
        if auth is not None:
            raise InvalidURI(
                f"option auth={mode} needs a secret: set CHROMA_AUTH_TOKEN (or secret_env=NAME / secret_file=PATH)"
            )
        return {}
    if any(ch in secret for ch in "\r\n\0"):
        raise InvalidURI("the Chroma secret contains a line break or NUL byte; it cannot be sent in an HTTP header")
    if mode == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if mode == "x-chroma-token":
        return {"X-Chroma-Token": secret}
    if ":" not in secret:
        if not user:
            raise InvalidURI(
                "auth=basic needs the secret as 'user:password' (or the user in the URI: chroma+http://user@host:port)"
            )
        secret = f"{user}:{secret}"
    return {"Authorization": "Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii")}


def _server_address(location: str) -> tuple[str, str, int]:
    """``(base_url_with_port, host, port)`` for a server location (IPv6 hosts in brackets);
    Chroma's default port is 8000 (443 for https)."""
    parts = urlsplit(location)
    port = parts.port or (443 if parts.scheme == "https" else 8000)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}{parts.path}", shown, port


class _Connection:
    """The chromadb client plus what error messages need to say where it points."""

    def __init__(self, config: StoreConfig):
        self.config = config
        self.tenant = config.option("tenant") or chromadb.DEFAULT_TENANT
        self.database = config.option("database") or chromadb.DEFAULT_DATABASE
        self.timeout = config.timeout(SERVER_CALL_TIMEOUT if config.is_server else None)
        if config.is_server:
            self.base_url, self.host, self.port = _server_address(config.location)
            self.where = f"Chroma server {self.host}:{self.port}"
            self.client = self._connect_http()
        else:
            if config.option("auth") is not None:
                raise InvalidURI("option auth applies to chroma+http(s) servers only")
            self.base_url, self.host, self.port = "", "", 0
            self.where = "in-memory Chroma" if config.transport == "memory" else f"Chroma directory {config.location}"
            self.client = self._connect_local()
        self._max_batch: int | None = None

    # Connecting ------------------------------------------------------------------------------

    def _connect_local(self) -> Any:
        kwargs = {"tenant": self.tenant, "database": self.database}
        if self.config.transport == "memory":
            return self._make_client(lambda: chromadb.EphemeralClient(**kwargs))
        path = Path(self.config.location)
        if not (path / "chroma.sqlite3").is_file():
            # PersistentClient would silently create an empty database here.
            raise CollectionNotFound(
                f"no Chroma database at {path} (no chroma.sqlite3), so collection {self.config.collection!r} does not exist"
            )
        return self._make_client(lambda: chromadb.PersistentClient(path=str(path), **kwargs))

    def _connect_http(self) -> Any:
        headers = auth_headers(self.config.option("auth"), self.config.secret, self.config.option("user"))
        self._preflight(headers)
        client = self._make_client(
            lambda: chromadb.HttpClient(
                host=self.base_url, port=self.port, ssl=self.config.transport == "https", headers=headers,
                tenant=self.tenant, database=self.database,
            )
        )
        # chromadb 1.5 builds its httpx session with timeout=None and has no setting for it: a server
        # that accepts the connection and then hangs (or was stopped) would block forever. Connect
        # fast; a read may take up to ``timeout`` (a 5,000-vector update can take a while).
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(self.timeout, connect=min(self.timeout or 10.0, 10.0))
        return client

    def _preflight(self, headers: Mapping[str, str]) -> None:
        """Reach the server with a short timeout and check the credentials, before chromadb does
        (its own errors lose the HTTP status and its session never times out)."""
        timeout = self.timeout or 10.0
        api = f"{self.base_url}/api/v2"
        try:
            with httpx.Client(timeout=timeout, headers=dict(headers)) as http:
                beat = http.get(f"{api}/heartbeat")
                self._check_status(beat, "heartbeat")
                ident = http.get(f"{api}/auth/identity")
                self._check_status(ident, "identity")
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {self.where} ({self.base_url}): {type(exc).__name__}: {exc}") from None

    def _check_status(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code in (401, 403):
            mode = self.config.option("auth") or ("bearer" if self.config.secret else "none")
            raise AuthenticationFailed(
                f"{self.where} refused the credentials (HTTP {resp.status_code} on {what}; auth={mode}); "
                "check CHROMA_AUTH_TOKEN / secret_env / secret_file and the auth option"
            )
        if resp.status_code >= 400:
            # redacted before it is cut short: a cut could leave part of an echoed secret unmatched
            error = ConnectionFailed(f"{self.where} answered HTTP {resp.status_code} on {what}: "
                                     f"{redact(resp.text)[:200]}")
            raise error.retryable(_retry_status(resp.status_code))

    def _make_client(self, factory: Any) -> Any:
        try:
            return factory()
        except chroma_errors.NotFoundError as exc:
            raise CollectionNotFound(
                f"{self.where}: tenant {self.tenant!r} / database {self.database!r} not found ({exc}); "
                f"collection {self.config.collection!r} cannot exist there"
            ) from None
        except (chroma_errors.ChromaAuthError, chroma_errors.AuthorizationError) as exc:
            raise AuthenticationFailed(f"{self.where} refused the credentials: {exc}") from None
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {self.where}: {exc}") from None
        except (chroma_errors.ChromaError, ValueError) as exc:
            raise ConnectionFailed(f"cannot open {self.where}: {exc}") from None

    # Calls -----------------------------------------------------------------------------------

    @contextmanager
    def calls(self, what: str, collection: str, *, write: bool = False) -> Iterator[None]:
        """Translate chromadb / httpx exceptions raised by the calls in the block."""
        try:
            yield
        except ConnectorError:
            raise
        except chroma_errors.NotFoundError as exc:
            raise CollectionNotFound(f"{what}: Chroma collection {collection!r} does not exist in {self.where} ({exc})") from None
        except (chroma_errors.ChromaAuthError, chroma_errors.AuthorizationError) as exc:
            raise AuthenticationFailed(f"{what} on {collection!r}: {self.where} refused the credentials: {exc}") from None
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"{what} on {collection!r}: lost {self.where}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # chromadb raises bare Exception(text) for unexpected HTTP answers
            cls = WriteFailed if write else ConnectorError
            hint = _BROKEN_HINT if _BROKEN_SIGN in str(exc) else ""
            status = _http_status(exc) if self.config.is_server else None
            # not chained: the client's exception may hold an echoed secret (the message is redacted)
            error = cls(f"{what} on Chroma collection {collection!r} ({self.where}) failed: "
                        + (f"HTTP {status}: " if status else "") + f"{type(exc).__name__}: {exc}{hint}")
            raise error.retryable(status is not None and _retry_status(status)) from None

    def max_batch(self) -> int:
        if self._max_batch is None:
            with self.calls("get_max_batch_size", "-"):
                size = int(self.client.get_max_batch_size())
            self._max_batch = size if size > 0 else 1000
        return self._max_batch

    def rows_per_write(self, dimension: int) -> int:
        """Records per write call: the server's batch cap, and the HTTP body budget for wide vectors."""
        return max(1, min(self.max_batch(), _PAYLOAD_BUDGET // (dimension * 6 + 64)))

    def get_collection(self, name: str) -> Any:
        _check_name(name)
        with self.calls("get_collection", name):
            # embedding_function=None: we never want a client-side embedding function, although
            # chromadb may still rebuild the persisted one (see the module docstring).
            return self.client.get_collection(name, embedding_function=None)

    def collection_exists(self, name: str) -> bool:
        try:
            self.get_collection(name)
        except CollectionNotFound:
            return False
        return True

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        session = getattr(getattr(client, "_server", None), "_session", None)
        close = getattr(client, "close", None)
        try:
            if close is not None:
                close()  # refcounted: a PersistentClient shared in this process stays open for others
            if isinstance(session, httpx.Client):
                session.close()
        except Exception:  # closing must never mask the caller's own error
            pass


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a chromadb exception: a ChromaError's own code, or the status of the
    httpx error chromadb was handling when it raised a bare Exception(body)."""
    if isinstance(exc, chroma_errors.ChromaError):
        try:
            return int(exc.code())
        except Exception:
            return None
    cur = exc.__context__
    while cur is not None:
        if isinstance(cur, httpx.HTTPStatusError):
            return cur.response.status_code
        cur = cur.__context__
    return None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise InvalidURI(
            f"collection name {name!r} is not a valid Chroma name (3-512 characters from [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit)"
        )


# -- helpers -----------------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _as_float32(rows: Any, dimension: int) -> np.ndarray:
    # chromadb returns float64 (HTTP: parsed JSON) holding float32 values: the cast back is exact.
    if rows is None or len(rows) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def _space_of(collection: Any) -> tuple[str, str]:
    """``(space, where it was found)`` for a collection, newest API first."""
    config = getattr(collection, "configuration_json", None) or {}
    for index in ("hnsw", "spann"):
        section = config.get(index) if isinstance(config, Mapping) else None
        if isinstance(section, Mapping) and section.get("space"):
            return str(section["space"]), f"configuration.{index}.space"
    try:  # deserialising the schema may rebuild (never call) an embedding function: tolerate failures
        schema = collection.schema
        entry = schema.keys.get("#embedding") if schema is not None else None
        space = entry.float_list.vector_index.config.space if entry is not None else None
        if space:
            return str(space), "schema.#embedding.space"
    except Exception:
        pass
    metadata = collection.metadata or {}
    if metadata.get("hnsw:space"):
        return str(metadata["hnsw:space"]), "metadata.hnsw:space"
    return "l2", "default"


#: Cosine collections hand back a copy about one float32 ulp of the norm off what was written.
_COSINE_TOLERANCE = 1e-6


def _same_vector(got: np.ndarray, want: np.ndarray, exact: bool) -> bool:
    if exact:
        return np.array_equal(got, want)
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
    return diff <= _COSINE_TOLERANCE * float(np.linalg.norm(want.astype(np.float64))) + 1e-30


def _to_scores(distances: Sequence[float], space: str) -> list[float]:
    d = np.asarray(distances, dtype=np.float64)
    scores = -d if space == "l2" else 1.0 - d
    return scores.tolist()


def _ef_name(collection: Any) -> str | None:
    config = getattr(collection, "configuration_json", None) or {}
    ef = config.get("embedding_function") if isinstance(config, Mapping) else None
    if isinstance(ef, Mapping):
        return str(ef.get("name") or ef.get("type"))
    return None


# -- the store ---------------------------------------------------------------------------------------


class ChromaStore(VectorStore):
    """One Chroma collection (see the module docstring for the write path and its guarantees)."""

    def __init__(self, config: StoreConfig):
        _check_name(config.collection)
        self.config = config
        self.name = config.collection
        self._conn: _Connection | None = _Connection(config)
        self._coll: Any = None
        self._space: str | None = None
        self._dimension: int | None = None

    # Plumbing --------------------------------------------------------------------------------

    @property
    def conn(self) -> _Connection:
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
                self._dimension = _as_float32(page["embeddings"], 0).shape[1]
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
        """Pages of ``coll.get`` in storage order, each re-reading the previous page's last id so a
        shift of the pages (records deleted before the cursor) is detected instead of skipping one."""
        offset, last = 0, None
        while True:
            overlap = 0 if last is None else 1
            with self.conn.calls("get (scan)", name):
                page = coll.get(limit=batch_size + overlap, offset=offset - overlap, where=where, include=include)
            ids = list(page["ids"])
            if overlap:
                if not ids or ids[0] != last:
                    raise ConnectorError(
                        f"collection {name!r} changed while it was being read (records before position {offset} were "
                        "deleted), so the scan could skip records; nothing was written by this scan, run again"
                    )
                page = {k: (v[1:] if k != "included" and v is not None else v) for k, v in page.items()}
                ids = ids[1:]
            if ids:
                yield page
            if len(ids) < batch_size:
                return
            offset += len(ids)
            last = ids[-1]

    def _existing(self, coll: Any, ids: list[str], name: str) -> set[str]:
        found: set[str] = set()
        for part in _chunks(len(ids), self.conn.max_batch()):
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
            round_trip_tolerance=0.0 if space != "cosine" else _COSINE_TOLERANCE, renormalises=space == "cosine",
        )

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        coll = self._collection()
        batch_size = check_batch_size(batch_size)
        rows = min(self.conn.max_batch(), read_page_rows(self._dim_or_none() or 1, batch_size))
        for page in self._scan(coll, self.name, max(rows, batch_size), ["embeddings"]):
            ids, vecs = list(page["ids"]), _as_float32(page["embeddings"], 0)
            for start in range(0, len(ids), batch_size):
                yield ids[start : start + batch_size], vecs[start : start + batch_size]

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        coll = self._collection()
        dim = self._dim_or_none() or 0  # an empty collection finds nothing
        wanted = dedupe(check_ids(ids))
        keys = [i for i in wanted if isinstance(i, str)]  # an int id cannot exist in Chroma
        got: dict[str, np.ndarray] = {}
        for part in _chunks(len(keys), self.conn.max_batch()):
            with self._calls("get"):
                page = coll.get(ids=keys[part], include=["embeddings"])  # storage order, unknown dropped
            got.update(zip(page["ids"], _as_float32(page["embeddings"], dim)))
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
        for part in _chunks(len(keys), self.conn.rows_per_write(dim)):
            chunk_ids, chunk_vecs = keys[part], vecs[part]
            with self._calls("update", write=True):
                # ids + embeddings ONLY: documents/metadatas would re-embed or overwrite (docstring).
                coll.update(ids=chunk_ids, embeddings=chunk_vecs)
            if verify:
                self._verify(coll, chunk_ids, chunk_vecs, dim)
        return len(keys)

    def _verify(self, coll: Any, ids: list[str], vecs: np.ndarray, dim: int) -> None:
        """Read the chunk back: Chroma ignores vanished ids silently, we do not.

        ip/l2 collections return exactly what was written. Cosine collections return a copy that
        differs by about one float32 ulp of the row's norm (and is not a fixed point: writing it
        back drifts again), so there the check allows 1e-6 x the row norm.
        """
        with self._calls("get (read-back)", write=True):
            page = coll.get(ids=ids, include=["embeddings"])
        got = dict(zip(page["ids"], _as_float32(page["embeddings"], dim)))
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
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidVectors(f"k must be a non-negative int, got {k!r}")
        k = int(k)
        excluded = {i for i in exclude if isinstance(i, str)}  # ints cannot be Chroma ids
        with self._calls("count"):
            count = int(coll.count())
        rows: list[list[tuple[RecordId, float]]] = [[] for _ in range(len(qs))]
        if k == 0 or count == 0 or len(qs) == 0:
            return pad_results(rows, k)
        # n_results that guarantees k survivors: k + every excluded id; start smaller, since few of
        # the excluded ids usually sit near a given query, and widen only for queries that need it.
        ceiling = min(count, k + len(excluded))
        n = min(ceiling, k + min(len(excluded), max(k, 32)))
        todo = list(range(len(qs)))
        while todo:
            hits = self._query(coll, qs[todo], n)
            again = []
            for qi, (hit_ids, scores) in zip(todo, hits):
                rows[qi] = [(i, s) for i, s in zip(hit_ids, scores) if i not in excluded]
                if len(rows[qi]) < k and len(hit_ids) >= n and n < ceiling:
                    again.append(qi)
            todo, n = again, min(ceiling, n * 4)
        return pad_results(rows, k)

    def _query(self, coll: Any, qs: np.ndarray, n: int) -> list[tuple[list[str], list[float]]]:
        out: list[tuple[list[str], list[float]]] = []
        per_call = max(1, min(self.conn.max_batch(), _QUERY_ROWS // n))
        space = self._space or "l2"
        for part in _chunks(len(qs), per_call):
            with self._calls("query"):
                res = coll.query(query_embeddings=qs[part], n_results=n, include=["distances"])
            for hit_ids, dists in zip(res["ids"], res["distances"]):
                out.append((list(hit_ids), _to_scores(dists, space)))
        return out

    # Query log -------------------------------------------------------------------------------

    def log_exists(self, name: str) -> bool:
        return self.conn.collection_exists(name)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        batch_size = check_batch_size(batch_size)
        log = self.conn.get_collection(name)  # CollectionNotFound names the log
        for page in self._scan(log, name, batch_size, ["embeddings", "metadatas"]):
            vecs = _as_float32(page["embeddings"], 0)
            metas = page["metadatas"] or [None] * len(page["ids"])
            for qid, vec, meta in zip(page["ids"], vecs, metas):
                yield _entry_from_record(name, qid, vec, meta or {})

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        queries = log_entries(queries, name)
        if not queries:
            return 0
        _check_name(name)
        log = self.conn.get_collection(name) if self.log_exists(name) else None
        dim = self._log_dimension(log, name, queries)
        check_log_dimension(name, queries, dim)
        ids = [q.query_id for q in queries]
        vecs = np.stack([q.vector for q in queries])
        metas = [_entry_metadata(q, name) for q in queries]
        sizes = [fields_bytes(m) for m in metas]
        check_entry_sizes(name, queries, sizes, " (half of a Chroma server's default request limit, 40 MiB)")
        rows = self.conn.rows_per_write(dim) if batch_size is None else min(check_batch_size(batch_size),
                                                                              self.conn.max_batch())
        before = _log_records(log, name, ids, self.conn) if log is not None else None
        target: list[Any] = [log]

        def create() -> None:
            with self.conn.calls("create query log", name, write=True):
                target[0] = self.conn.client.get_or_create_collection(
                    name, configuration={"hnsw": {"space": LOG_SPACE}}, embedding_function=None,
                    metadata={"nudge_sync_query_log": 1},
                )

        def upsert(part: slice) -> Callable[[], None]:
            def write() -> None:
                with self.conn.calls("upsert query log", name, write=True):
                    target[0].upsert(ids=ids[part], embeddings=vecs[part], metadatas=metas[part])
            return write

        writes = [] if log is not None else [create]
        writes += [upsert(part) for part in chunks_by_bytes([s + 6 * dim for s in sizes], rows, _PAYLOAD_BUDGET)]
        write_or_put_back(name, writes, lambda: self._put_log_back(name, target[0], ids, before))
        return len(ids)

    def _put_log_back(self, name: str, log: Any, ids: list[str], before: dict[str, Any] | None) -> str:
        """Undo an append: drop a log it created, else delete the records it added and rewrite those it
        replaced with what they held (metadata keys it wrote reset first: Chroma merges metadata)."""
        if before is None:
            with self.conn.calls("drop query log", name, write=True):
                self.conn.client.delete_collection(name)
            return "the log this append created was removed"
        present = set(before["ids"])
        added = [i for i in ids if i not in present]
        step = self.conn.max_batch()
        for start in range(0, len(added), step):
            with self.conn.calls("delete from query log", name, write=True):
                log.delete(ids=added[start : start + step])
        kept = before["ids"]
        metas = [{**dict.fromkeys(_LOG_FIELDS), **(m or {})} for m in before["metadatas"]]
        for start in range(0, len(kept), step):
            part = slice(start, start + step)
            with self.conn.calls("restore query log", name, write=True):
                log.upsert(ids=kept[part], embeddings=before["embeddings"][part], metadatas=metas[part])
        return f"{len(kept)} replaced entries restored, {len(added)} added entries removed"

    def _log_dimension(self, log: Any, name: str, queries: list[LabelledQuery]) -> int:
        """The dimension entries must have: the log's, else the data collection's, else the first's."""
        if log is not None:
            with self.conn.calls("peek query log", name):
                page = log.get(limit=1, include=["embeddings"])
            if page["ids"]:
                return _as_float32(page["embeddings"], 0).shape[1]
        try:
            return self._dim()
        except (CollectionNotFound, UnsupportedCollection):
            return int(np.asarray(queries[0].vector).size)

    # State -----------------------------------------------------------------------------------

    def state(self, name: str) -> ChromaState:
        _check_name(name)
        return ChromaState(self, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._coll = None
        if conn is not None:
            conn.close()


# -- query log records -----------------------------------------------------------------------------


def _entry_metadata(q: LabelledQuery, log: str) -> dict[str, Any]:
    """Chroma metadata for one entry. Absent fields are None so an upsert deletes stale keys
    (Chroma merges metadata on upsert). Lists are native while the record's list elements stay
    within :data:`LIST_ELEMENTS`, else JSON text (``relevant_ids_json``, ``grades_json``)."""
    fields = entry_fields(q, log)
    rel, grades = fields["relevant_ids"], fields["grades"] or None
    meta: dict[str, Any] = dict.fromkeys(_LOG_FIELDS)
    if len({type(i) for i in rel}) == 1 and len(rel) + len(grades or ()) <= LIST_ELEMENTS:
        meta.update(relevant_ids=rel, grades=grades)
    else:  # mixed types (Chroma lists hold one type) or a list Chroma cannot index: JSON text
        meta.update(relevant_ids_json=json.dumps(rel), grades_json=None if grades is None else json.dumps(grades))
    meta.update(timestamp=fields["timestamp"], split=fields["split"])
    return meta


def _entry_from_record(log: str, qid: str, vec: np.ndarray, meta: Mapping[str, Any]) -> LabelledQuery:
    fields = dict(meta)
    for key in ("relevant_ids", "grades"):
        text = meta.get(f"{key}_json")
        if text is None:
            continue
        try:
            fields[key] = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            raise UnsupportedCollection(f"query log {log!r}, entry {qid!r}: field '{key}_json' is not "
                                        "JSON text") from None
    return entry_from_fields(log, qid, vec, fields)


def _log_records(log: Any, name: str, ids: list[str], conn: _Connection) -> dict[str, Any]:
    """The log's records among ``ids`` as they are now, to put back after a failed append."""
    out: dict[str, Any] = {"ids": [], "embeddings": [], "metadatas": []}
    step = conn.max_batch()
    for start in range(0, len(ids), step):
        with conn.calls("read query log", name):
            got = log.get(ids=ids[start : start + step], include=["embeddings", "metadatas"])
        out["ids"] += list(got["ids"])
        out["embeddings"] += list(_as_float32(got["embeddings"], 0))
        out["metadatas"] += list(got["metadatas"] or [None] * len(got["ids"]))
    return out


# -- state collection ------------------------------------------------------------------------------


class ChromaState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    def __init__(self, store: ChromaStore, name: str):
        self.store = store
        self.name = name

    @property
    def conn(self) -> _Connection:
        return self.store.conn

    def _coll(self) -> Any:
        return self.conn.get_collection(self.name)

    def _dimension(self, coll: Any) -> int:
        dim = (coll.metadata or {}).get("dimension")
        if isinstance(dim, int) and dim > 0:
            return dim
        with self.conn.calls("peek state", self.name):
            page = coll.get(limit=1, include=["embeddings"])
        if not page["ids"]:
            raise UnsupportedCollection(f"state collection {self.name!r} has no dimension in its metadata and no records")
        return _as_float32(page["embeddings"], 0).shape[1]

    @staticmethod
    def _id(kind: str, key: str) -> str:
        return f"{kind}:{key}"

    def exists(self) -> bool:
        return self.conn.collection_exists(self.name)

    def create(self, dimension: int) -> None:
        dimension = check_state_dimension(self.name, dimension)
        with self.conn.calls("create state collection", self.name, write=True):
            self.conn.client.get_or_create_collection(
                self.name, configuration={"hnsw": {"space": STATE_SPACE}}, embedding_function=None,
                metadata={"nudge_sync_state": 1, "dimension": int(dimension)},
            )

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        records = list(records)
        ids, metas = self._prepare(kind, records)
        if not ids:
            return
        coll = self._coll()
        dim = self._dimension(coll)
        vecs = np.stack([state_vector(self.name, r, dim) for r in records])
        for part in _chunks(len(ids), self.conn.rows_per_write(dim)):
            with self.conn.calls("upsert state", self.name, write=True):
                coll.upsert(ids=ids[part], embeddings=vecs[part], metadatas=metas[part])

    def put_meta(self, kind: str, records: Sequence[StateRecord]) -> None:
        # metadata alone: about 3x cheaper than an upsert that rewrites the HNSW entries as well
        records = list(records)
        ids, metas = self._prepare(kind, records)
        if not ids:
            return
        coll = self._coll()
        for part in _chunks(len(ids), self.conn.rows_per_write(self._dimension(coll))):
            with self.conn.calls("update state", self.name, write=True):
                coll.update(ids=ids[part], metadatas=metas[part])

    def _prepare(self, kind: str, records: list[StateRecord]) -> tuple[list[str], list[dict[str, Any]]]:
        """Validated Chroma ids and metadata rows for ``records``."""
        check_state_kind(kind)
        keys = [r.key for r in records]
        check_state_keys(self.name, keys)
        metas = [{"kind": kind, "key": r.key, "meta": state_meta_json(self.name, r), "has_vector": r.vector is not None}
                 for r in records]
        return [self._id(kind, k) for k in keys], metas

    def _records(self, page: Mapping[str, Any]) -> list[StateRecord]:
        vecs = _as_float32(page["embeddings"], 0)
        out = []
        for vec, meta in zip(vecs, page["metadatas"] or []):
            meta = meta or {}
            out.append(StateRecord(key=str(meta.get("key")), vector=vec.copy() if meta.get("has_vector") else None,
                                   meta=json.loads(meta.get("meta") or "{}")))
        return out

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        check_state_kind(kind)
        coll = self._coll()
        ids = dedupe(self._id(kind, k) for k in keys)
        out: list[StateRecord] = []
        for part in _chunks(len(ids), self.conn.max_batch()):
            with self.conn.calls("get state", self.name):
                page = coll.get(ids=ids[part], include=["embeddings", "metadatas"])
            out.extend(self._records(page))
        return out

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        check_state_kind(kind)
        batch_size = check_batch_size(batch_size)
        coll = self._coll()
        for page in self.store._scan(coll, self.name, batch_size, ["embeddings", "metadatas"], where={"kind": kind}):
            yield self._records(page)

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        check_state_kind(kind)
        coll = self._coll()
        ids = dedupe(self._id(kind, k) for k in keys)
        for part in _chunks(len(ids), self.conn.max_batch()):
            with self.conn.calls("delete state", self.name, write=True):
                coll.delete(ids=ids[part])

    def drop(self) -> None:
        try:
            with self.conn.calls("delete state collection", self.name, write=True):
                self.conn.client.delete_collection(self.name)
        except CollectionNotFound:
            pass
