"""Vector database connectors for nudge-sync.

One small interface (:class:`VectorStore`, with its :class:`StateCollection`) and one module per
database: ``connectors.qdrant``, ``connectors.milvus``, ``connectors.chroma``. Open any of them
with :func:`open_store` and a URI such as ``qdrant:///data/qdrant?collection=docs``.
Nothing here knows about NUDGE; the sync engine in ``nudge_sync`` programs against this API.
"""

from ._base import (
    METRICS,
    Appended,
    CollectionInfo,
    IdType,
    LabelledQuery,
    Metric,
    RecordId,
    SearchResult,
    StateCollection,
    StateRecord,
    VectorStore,
    Versioned,
    check_batch_size,
)
from ._bounded import read_bounded
from ._state import state_name_problem
from ._entry import check_entry, labelled_query
from ._errors import (
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    InvalidEntry,
    InvalidURI,
    InvalidVectors,
    MissingDependency,
    UnknownIds,
    UnsupportedCollection,
    WriteFailed,
)
from .files import LogFileError, read_log_file, read_log_places, write_log_file
from ._secrets import redact, redact_data
from ._uri import StoreConfig, create_collection, on_backend_loaded, open_store, parse_uri, release_embedded, require_backend

__all__ = [
    "METRICS",
    "AuthenticationFailed",
    "CollectionInfo",
    "CollectionNotFound",
    "ConnectionFailed",
    "ConnectorError",
    "IdType",
    "InvalidEntry",
    "InvalidURI",
    "InvalidVectors",
    "Appended",
    "LabelledQuery",
    "LogFileError",
    "Metric",
    "MissingDependency",
    "RecordId",
    "SearchResult",
    "StateCollection",
    "StateRecord",
    "StoreConfig",
    "UnknownIds",
    "UnsupportedCollection",
    "VectorStore",
    "Versioned",
    "WriteFailed",
    "check_batch_size",
    "check_entry",
    "create_collection",
    "labelled_query",
    "on_backend_loaded",
    "open_store",
    "release_embedded",
    "require_backend",
    "parse_uri",
    "read_log_file",
    "read_bounded",
    "read_log_places",
    "redact",
    "redact_data",
    "state_name_problem",
    "write_log_file",
]
