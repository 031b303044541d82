"""Errors raised by connectors.

    ConnectorError
    ├── MissingDependency      the database's client library is not installed
    ├── InvalidURI             the store URI / config cannot be understood
    ├── ConnectionFailed       the server cannot be reached (or answered garbage)
    │   └── AuthenticationFailed   the server refused our credentials
    ├── CollectionNotFound     the named collection (or log, or state) does not exist
    ├── UnsupportedCollection  the collection exists but cannot be served safely
    │                          (auto-id primary key, no dense float vector, unknown metric, ...)
    ├── InvalidVectors         wrong dimension, NaN/inf values, ids/vectors length mismatch
    │   └── LogFileError       a malformed query log file (names file, line / row, field)
    ├── UnknownIds             some requested ids are not in the collection
    └── WriteFailed            the database rejected a write or a read-back did not match

Every error is raised *before* anything is written when the problem can be detected
up front (dimension, NaN, unknown ids): a failed call leaves the database unchanged.
Messages name the collection, field, option or ids that are wrong, and never hold a configured
secret (``connectors._secrets`` redacts them when the error is created).

``transient`` says whether the same call may succeed if made again (the database was unreachable,
timed out, was overloaded or rate-limited us): ``connectors._retry`` retries exactly those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._secrets import redact


class ConnectorError(Exception):
    """Base class of every error a connector raises on purpose."""

    #: The same call may succeed when made again (see the module docstring).
    transient: bool = False

    def __init__(self, *args: Any):
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))

    def retryable(self, transient: bool = True) -> ConnectorError:
        """This error, marked as worth retrying (or not); returns itself for ``raise ... .retryable()``."""
        self.transient = transient
        return self


class MissingDependency(ConnectorError, ImportError):
    """The client library for a backend is not installed."""


class InvalidURI(ConnectorError, ValueError):
    """A store URI or configuration value is malformed."""


class ConnectionFailed(ConnectorError):
    """The database server could not be reached or did not answer."""

    transient = True


class AuthenticationFailed(ConnectionFailed):
    """The database refused the credentials (or their absence)."""

    transient = False


class CollectionNotFound(ConnectorError):
    """A collection that must exist does not."""


class UnsupportedCollection(ConnectorError):
    """The collection exists, but nudge-sync cannot serve it safely."""


class InvalidVectors(ConnectorError, ValueError):
    """Vectors passed to a write have the wrong shape or non-finite values."""


class UnknownIds(ConnectorError, KeyError):
    """Some ids are absent from the collection. ``ids`` lists them (at most all)."""

    def __init__(self, collection: str, ids: Sequence[Any]):
        self.collection = collection
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10])
        more = f" (and {len(self.ids) - 10} more)" if len(self.ids) > 10 else ""
        super().__init__(f"{len(self.ids)} id(s) not found in collection {collection!r}: {shown}{more}")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class WriteFailed(ConnectorError):
    """The database rejected a write, or reading it back did not match."""
