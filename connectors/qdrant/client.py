"""The connection to Qdrant: local-mode clients shared per directory, server clients, and the
translation of qdrant-client errors into connector errors (``_Connection.calls``)."""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from .._base import Metric
from .._errors import (
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    InvalidURI,
    WriteFailed,
)
from .._retry import retry_status as _retry_status
from .._secrets import redact
from .._uri import StoreConfig


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
