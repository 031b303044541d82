"""The connection to Milvus (Lite or a server): the client, engine versions, and the translation of
pymilvus and gRPC errors into connector errors (``Connection.calls``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from pymilvus import DataType, MilvusClient

from .._base import Metric
from .._errors import (
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    InvalidURI,
    WriteFailed,
)
from .._uri import SERVER_CALL_TIMEOUT, StoreConfig


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
                 "is stopping", "too many requests",
                 # query nodes re-subscribing their channels after a restart or a hang (Milvus 2.3.5
                 # answered this for seconds after a SIGSTOPped server was continued)
                 "channel not subscribed", "channel lacks")
_AUTH_PHRASES = ("auth check failure", "unauthenticated", "authentication fail", "missing authorization",
                 "permission denied", "privilege not permitted", "not authenticated")

_CLIENT_VERSION = package_version("pymilvus")


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


class Connection:
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


def check_name(name: str, what: str = "collection") -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidURI(f"{what} name {name!r} is not a valid Milvus name (letters, digits and '_', starting "
                         "with a letter or '_', at most 255 characters)")
