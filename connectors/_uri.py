"""Store URIs: one string names a backend, where it lives and which collection to use.

Grammar (``<backend>[+<transport>]:<location>?collection=<name>&<option>=<value>...``)::

    qdrant:///abs/dir?collection=docs         Qdrant local mode, on disk
    qdrant:relative/dir?collection=docs       (relative path)
    qdrant::memory:?collection=docs           Qdrant local mode, in memory (this process only)
    qdrant+http://host:6333?collection=docs   Qdrant server (``+https`` for TLS)
    milvus:///abs/file.db?collection=docs     Milvus Lite, embedded
    milvus+http://host:19530?collection=docs  Milvus server (``+https`` for TLS)
    chroma:///abs/dir?collection=docs         Chroma persistent client
    chroma+http://host:8000?collection=docs   Chroma server (``+https`` for TLS)
    memory://NAME?collection=docs             in-memory database NAME (this process only; tests)

Options every backend understands: ``collection`` (required), ``timeout`` (seconds per call;
servers default to a finite one, so a stopped server cannot hang a run), ``retry_budget`` (seconds
the whole command may spend retrying calls that failed transiently, default 60; 0 = no retries;
see ``connectors._retry``: the deadline). Backend options: ``vector`` (Qdrant named vector or Milvus vector field;
detected when the collection has exactly one; a Chroma collection has one embedding, so Chroma
refuses it), Chroma ``tenant``, ``database``, ``auth`` (``bearer`` | ``x-chroma-token`` |
``basic``); Milvus ``db_name``; Qdrant ``prefer_grpc``, ``version_field`` (conditional writes
against an application-maintained payload field; see ``connectors.qdrant``).

Secrets never appear in URIs (they would end up in shell history, logs and reports). They are
read from an environment variable (default ``QDRANT_API_KEY``, ``MILVUS_TOKEN``,
``CHROMA_AUTH_TOKEN``; override the name with ``secret_env=NAME``) or from a file
(``secret_file=/path``; surrounding whitespace is stripped; at most :data:`MAX_SECRET_BYTES`; an empty
file is refused).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import _secrets
from ._base import METRICS, RecordId, VectorStore
from ._bounded import read_bounded
from ._errors import InvalidURI, MissingDependency
from ._retry import DEFAULT_RETRY_BUDGET, RetryingStore, RetryPolicy

BACKENDS: dict[str, tuple[str, str]] = {
    # backend -> (module implementing ``open_store(config)``, pip extra)
    "qdrant": ("connectors.qdrant", "qdrant"),
    "milvus": ("connectors.milvus", "milvus"),
    "chroma": ("connectors.chroma", "chroma"),
    "memory": ("connectors.memory", ""),
}

DEFAULT_SECRET_ENV: dict[str, str] = {
    "qdrant": "QDRANT_API_KEY",
    "milvus": "MILVUS_TOKEN",
    "chroma": "CHROMA_AUTH_TOKEN",
}

#: Seconds a call to a database server may take before it counts as failed (``timeout=`` changes it).
SERVER_CALL_TIMEOUT = 60.0

#: The most bytes read from a ``secret_file`` (a token or password is far smaller; /dev/zero is not).
MAX_SECRET_BYTES = 64 * 1024

_SECRET_PARAMS = {"api_key", "apikey", "token", "password", "secret", "key"}
_COMMON_OPTIONS = {"collection", "timeout", "retry_budget", "secret_env", "secret_file"}
_BACKEND_OPTIONS = {
    "qdrant": {"prefer_grpc", "vector", "version_field"},
    "milvus": {"db_name", "vector"},
    "chroma": {"tenant", "database", "auth"},  # a Chroma collection has one embedding: no vector=
    "memory": set(),
}


@dataclass(frozen=True)
class StoreConfig:
    """A parsed store address. ``secret`` is excluded from repr and from :meth:`redacted`."""

    backend: str
    transport: str  #: "local" | "memory" | "http" | "https"
    location: str  #: absolute path for local, "" for memory, "http(s)://host:port/prefix" for servers
    collection: str
    options: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False, compare=False)

    @property
    def is_server(self) -> bool:
        return self.transport in ("http", "https")

    def redacted(self) -> str:
        """A URI for logs and reports: everything but the secret."""
        if self.backend == "memory":
            where = f"memory://{self.location}"
        elif self.transport == "memory":
            where = f"{self.backend}::memory:"
        elif self.transport == "local":
            where = f"{self.backend}://{self.location}"
        else:
            where = f"{self.backend}+{self.location}"
        opts = "&".join(f"{k}={v}" for k, v in sorted({"collection": self.collection, **self.options}.items()))
        return f"{where}?{opts}"

    def with_collection(self, collection: str) -> StoreConfig:
        return replace(self, collection=collection)

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.options.get(name, default)

    def retry_budget(self) -> float:
        """Seconds a transiently failing call is retried (``retry_budget=``; default 60, 0 = never)."""
        value = self._seconds("retry_budget", DEFAULT_RETRY_BUDGET, zero=True)
        assert value is not None
        return value

    def timeout(self, default: float | None = None) -> float | None:
        return self._seconds("timeout", default, zero=False)

    def _seconds(self, name: str, default: float | None, *, zero: bool) -> float | None:
        """Option ``name`` as a finite number of seconds (> 0, or >= 0 when ``zero``), else ``default``."""
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise InvalidURI(f"option {name}={raw!r} is not a number of seconds") from None
        if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
            bound = ">= 0" if zero else "> 0"
            raise InvalidURI(f"option {name}={raw!r} must be a finite number of seconds {bound}")
        return value


def parse_uri(uri: str, *, collection: str | None = None, env: Mapping[str, str] | None = None) -> StoreConfig:
    """Parse a store URI (see the module docstring). ``collection`` overrides the URI's one."""
    env = os.environ if env is None else env
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidURI("empty store URI; expected e.g. qdrant:///path/to/dir?collection=docs")
    raw = uri.strip()
    uri = _hide_password(raw)  # what error messages may show
    scheme, sep, rest = raw.partition(":")
    if not sep:
        raise InvalidURI(f"store URI {uri!r} has no scheme; expected one of {sorted(BACKENDS)} (e.g. qdrant:///data?collection=docs)")
    backend, _, transport = scheme.lower().partition("+")
    if backend not in BACKENDS:
        raise InvalidURI(f"unknown backend {backend!r} in {uri!r}; expected one of {sorted(BACKENDS)}")
    rest, _, query = rest.partition("?")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        key = key.lower()
        if key in _SECRET_PARAMS:
            raise InvalidURI(
                f"option {key!r} looks like a secret; secrets are never read from URIs. "
                f"Set {DEFAULT_SECRET_ENV.get(backend, 'the secret')} (or secret_env=NAME / secret_file=PATH)"
            )
        if key == "version_field" and backend != "qdrant":
            raise InvalidURI(f"option version_field (conditional writes) is a Qdrant option: {backend} has no "
                             "conditional vector write, so nudge-sync cannot honour it there")
        if key not in _COMMON_OPTIONS | _BACKEND_OPTIONS[backend]:
            allowed = sorted(_COMMON_OPTIONS | _BACKEND_OPTIONS[backend])
            raise InvalidURI(f"unknown option {key!r} for {backend}; allowed: {allowed}")
        if key in params:
            raise InvalidURI(f"option {key!r} given twice in {uri!r}")
        params[key] = value

    if backend == "memory":
        if transport or not rest.startswith("//") or not rest[2:] or "/" in rest[2:]:
            raise InvalidURI(f"{uri!r}: an in-memory database is named as memory://NAME?collection=...")
        transport, location = "memory", rest[2:]
    elif transport in ("http", "https"):
        try:
            parts = urlsplit(f"{transport}:{rest}")
            parts.hostname  # noqa: B018  # may raise too (e.g. an unclosed IPv6 bracket)
        except ValueError as exc:
            raise InvalidURI(f"{uri!r}: not a valid server address ({exc}); e.g. {backend}+{transport}://localhost:PORT "
                             "or [::1]:PORT for IPv6") from None
        if not parts.hostname:
            raise InvalidURI(f"{uri!r}: a server URI needs a host, e.g. {backend}+{transport}://localhost:PORT")
        if parts.password is not None:
            raise InvalidURI(f"{uri!r}: passwords are never read from URIs; use {DEFAULT_SECRET_ENV[backend]}")
        try:
            port = parts.port
        except ValueError:
            raise InvalidURI(f"{uri!r}: the port must be a number from 0 to 65535") from None
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        location = f"{transport}://{host}" + (f":{port}" if port else "") + parts.path.rstrip("/")
        if parts.username:
            params.setdefault("user", parts.username)
    elif transport == "":
        if rest == ":memory:":
            transport, location = "memory", ""
        else:
            path = rest[2:] if rest.startswith("//") else rest  # "///abs" -> "/abs"; "rel" -> "rel"
            if rest.startswith("//") and not path.startswith("/"):
                raise InvalidURI(f"{uri!r}: use {backend}:///absolute/path or {backend}:relative/path (no host for local stores)")
            if not path:
                raise InvalidURI(f"{uri!r}: no path; e.g. {backend}:///var/lib/vectors?collection=docs")
            transport, location = "local", str(Path(path).expanduser().resolve())
    else:
        raise InvalidURI(f"unknown transport {transport!r} in {uri!r}; use {backend}+http or {backend}+https")

    if collection is not None and not collection:  # given empty: never "the URI's own" (cold try)
        raise InvalidURI(f"an empty collection name was given to override {uri!r}'s")
    coll = collection or params.pop("collection", None)
    params.pop("collection", None)
    if not coll:
        raise InvalidURI(f"{uri!r}: no collection; add ?collection=NAME")
    secret = _read_secret(backend, params, env)
    # from now on no message, report or log line of this process may show it, in any encoding
    _secrets.register(secret, user=params.get("user"))
    return StoreConfig(backend, transport, location, coll, params, secret)


def _hide_password(uri: str) -> str:
    """The URI with any ``user:password@`` password replaced, for error messages."""
    head, sep, tail = uri.partition("://")
    if not sep:
        return uri
    netloc, slash, path = tail.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    return f"{head}{sep}{netloc}{slash}{path}"


def _read_secret(backend: str, params: dict[str, str], env: Mapping[str, str]) -> str | None:
    path = params.pop("secret_file", None)
    env_name = params.pop("secret_env", None)
    if path is not None:
        raw = read_bounded(path, MAX_SECRET_BYTES, f"secret_file={path!r}")
        try:
            secret = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:  # the bytes are never shown: they may be the secret
            raise InvalidURI(f"secret_file={path!r} is not UTF-8 text (at byte {exc.start}): is it the "
                             "right file?") from None
        if not secret:  # a file named for a secret holds one: an empty one is a mistake, not "no credentials"
            raise InvalidURI(f"secret_file={path!r} is empty (nothing but whitespace in {len(raw):,} bytes): "
                             "is it the right file?")
        return secret
    if env_name is not None and env_name not in env:
        raise InvalidURI(f"secret_env={env_name!r} names an environment variable that is not set")
    if env_name is None and backend not in DEFAULT_SECRET_ENV:
        return None  # a database without credentials (memory://)
    value = env.get(env_name or DEFAULT_SECRET_ENV[backend])
    return value or None


def open_store(target: str | StoreConfig, *, collection: str | None = None, **options: Any) -> VectorStore:
    """Open a :class:`VectorStore` from a URI or a :class:`StoreConfig`.

    Keyword ``options`` are backend options (as in the URI) and win over the URI's.
    The store is connected lazily or eagerly depending on the backend, but an unreachable
    server or missing collection is always reported by ``describe()`` at the latest.
    """
    config = parse_uri(target, collection=collection) if isinstance(target, str) else target
    if collection and isinstance(target, StoreConfig):
        config = config.with_collection(collection)
    if options:
        allowed = _COMMON_OPTIONS | _BACKEND_OPTIONS[config.backend]
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise InvalidURI(f"unknown option(s) {unknown} for {config.backend}; allowed: {sorted(allowed)}")
        config = replace(config, options={**config.options, **{k: str(v) for k, v in options.items()}})
    # checked before anything is opened; servers' calls time out (SERVER_CALL_TIMEOUT unless timeout=)
    policy = RetryPolicy(config.retry_budget(),
                         call_timeout=config.timeout(SERVER_CALL_TIMEOUT) if config.is_server else None)
    module = _backend_module(config.backend)
    # connecting is a database call too: a server restarting for a moment is waited for
    return RetryingStore(policy.call("connect", lambda: module.open_store(config)), policy)


def release_embedded(target: str | StoreConfig, *, collection: str | None = None) -> None:
    """Let go of an embedded database's file after its store was closed, so another process may
    open it: Milvus Lite's engine keeps running in this process (its file locked) after its client
    is closed, until released. A no-op for servers and for backends whose ``close`` suffices.
    Only a long-running process (the watcher, between cycles) needs this; no store of this process
    may be open on the file any more."""
    config = parse_uri(target, collection=collection) if isinstance(target, str) else target
    release = getattr(_backend_module(config.backend), "release_embedded", None)
    if release is not None and not config.is_server:
        release(config)


_loaded_hooks: list[Callable[[str], None]] = []


def on_backend_loaded(hook: Callable[[str], None]) -> None:
    """Call ``hook(backend)`` whenever a backend module is looked up (after its first import). Client
    libraries configure logging when imported (pymilvus installs its own stderr handlers): the CLI
    uses this to put its own logging configuration back."""
    _loaded_hooks.append(hook)


def require_backend(backend: str) -> None:
    """Import ``backend``'s client library now: MissingDependency naming the extra to install if it
    is absent (for a command that does other work, e.g. generate data, before it opens a store)."""
    _backend_module(backend)


def _backend_module(backend: str) -> Any:
    module_name, extra = BACKENDS[backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # anything missing that is not ours is a client library or one of its own dependencies
        # (pymilvus needs orjson and grpc): the extra installs them all
        if exc.name and not exc.name.startswith(("connectors", "nudge_sync")):
            raise MissingDependency(
                f"the {backend} backend needs {exc.name.split('.')[0]}; install it with: pip install "
                f"'nudge-sync[{extra}]' (from a checkout of nudge-sync: pip install '.[{extra}]')"
            ) from exc
        raise
    for hook in _loaded_hooks:
        hook(backend)
    return module


def create_collection(
    target: str | StoreConfig,
    ids: Sequence[RecordId],
    vectors: Any,
    *,
    metric: str = "cosine",
    payloads: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[str] | None = None,
    collection: str | None = None,
) -> None:
    """Create a collection and load records into it (demo, benchmarks, examples).

    nudge-sync itself never creates user collections; this loader exists so the demo and the
    benchmarks can build a realistic one with each database's recommended schema. ``payloads``
    are flat dicts of str/int/float/bool stored natively (Qdrant payload, Milvus dynamic fields,
    Chroma metadata); ``documents`` are stored where the database has a place for text.
    Refuses to overwrite an existing collection.
    """
    config = parse_uri(target, collection=collection) if isinstance(target, str) else target
    if collection and isinstance(target, StoreConfig):
        config = config.with_collection(collection)
    if metric not in METRICS:
        raise InvalidURI(f"metric {metric!r} is not one of {sorted(METRICS)}")
    module = _backend_module(config.backend)
    module.create_collection(config, list(ids), vectors, metric=metric,
                             payloads=list(payloads) if payloads is not None else None,
                             documents=list(documents) if documents is not None else None)
