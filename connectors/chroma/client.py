"""The connection to Chroma: persistent and HTTP clients, authentication headers, batch limits and the
translation of chromadb errors into connector errors (``Connection.calls``)."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
import chromadb.errors as chroma_errors
import httpx
import chromadb.api.fastapi as chroma_fastapi

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
from .._uri import SERVER_CALL_TIMEOUT, StoreConfig


SPACE_TO_METRIC: dict[str, Metric] = {"cosine": "cosine", "ip": "dot", "l2": "l2"}
AUTH_MODES = ("bearer", "x-chroma-token", "basic")
LOG_SPACE = "ip"
#: The query log's index. nudge-sync reads a log by id and by scan, never by a vector search, so its
#: HNSW graph is built cheaply: with Chroma's defaults (ef_construction 100, 16 neighbours) building
#: it was most of a ``chroma run`` server's work in a ``feedback import``; these cut that work per
#: entry by about 40% (bench/results/import.md).
LOG_HNSW = {"space": LOG_SPACE, "ef_construction": 10, "max_neighbors": 4}
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


class Connection:
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
        client = self._make_client(lambda: self._http_client(headers))
        # chromadb 1.5 builds its httpx session with timeout=None and has no setting for it: a server
        # that accepts the connection and then hangs (or was stopped) would block forever. Connect
        # fast; a read may take up to ``timeout`` (a 5,000-vector update can take a while).
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(self.timeout, connect=min(self.timeout or 10.0, 10.0))
        return client

    def _http_client(self, headers: Mapping[str, str]) -> Any:
        """``chromadb.HttpClient`` whose session times out from the start: the client's constructor
        already calls the server (identity, tenant, database) with a session chromadb builds without
        a timeout (and refuses any API class but its own), so a server that hung after the preflight
        would block the constructor for ever. chromadb's module sees an httpx whose ``Client``
        has our timeout while the client is built."""
        seconds = self.timeout or SERVER_CALL_TIMEOUT
        with _BUILD_LOCK:
            saved = chroma_fastapi.httpx
            chroma_fastapi.httpx = _TimedHttpx(httpx.Timeout(seconds, connect=min(seconds, 10.0)))
            try:
                return chromadb.HttpClient(host=self.base_url, port=self.port, ssl=self.config.transport == "https",
                                           headers=dict(headers), tenant=self.tenant, database=self.database)
            finally:
                chroma_fastapi.httpx = saved

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
        check_name(name)
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


class _TimedHttpx:
    """The httpx module as chromadb's HTTP API sees it while a client is built: ``Client`` gets our
    timeout instead of chromadb's ``None``; everything else is httpx itself."""

    def __init__(self, timeout: httpx.Timeout):
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)

    def Client(self, *args: Any, **kwargs: Any) -> httpx.Client:  # noqa: N802 (httpx's name)
        kwargs["timeout"] = self._timeout
        return httpx.Client(*args, **kwargs)


_BUILD_LOCK = threading.Lock()


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


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise InvalidURI(
            f"collection name {name!r} is not a valid Chroma name (3-512 characters from [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit)"
        )
