"""Test harnesses: one per real backend the contract, sync and CLI suites run against.

A harness knows how to build a collection *with the database's native client* (so the code under
test is not used to prepare its own fixtures), how to read back everything that is not the
NUDGE vector (to prove writes left it byte-identical), and how to reach the database by URI.

Each backend module (``tests/backends/qdrant.py`` ...) defines session fixtures named
``harness_<name>`` (``-`` replaced by ``_``) returning a :class:`Harness`. ``tests/conftest.py``
parametrises the generic ``harness`` fixture over :data:`HARNESS_NAMES` (or the subset named by
the ``NUDGE_SYNC_BACKENDS`` env var, comma-separated).
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RecordId = int | str

HARNESS_NAMES: tuple[str, ...] = (
    "qdrant-local",        # QdrantClient(path=...)
    "milvus-lite",         # MilvusClient("file.db"), in process
    "milvus-lite-server",  # `milvus-lite server` on a loopback port
    "milvus-2.3.5",        # PyPI milvus==2.3.5 `milvus-server` (real standalone)
    "chroma-persistent",   # chromadb.PersistentClient(path)
    "chroma-http",         # `chroma run` on a loopback port
    "memory",              # connectors.memory, in this process (no subprocess can reach it)
)


class Harness(ABC):
    """One backend instance the suites run against."""

    #: pytest id, one of HARNESS_NAMES
    name: str
    #: connectors backend name: "qdrant" | "milvus" | "chroma" | "memory"
    backend: str
    #: id types this backend can hold, subset of ("int", "str", "uuid"); the first is the default
    id_types: tuple[str, ...]
    #: True when the harness is a network server (unreachable / credential tests apply)
    is_server: bool = False
    #: True when the database lives in the test process only, so a ``nudge-sync`` subprocess cannot
    #: reach it (tests/conftest.py leaves such harnesses out of the subprocess suites)
    in_process_only: bool = False

    @abstractmethod
    def uri(self, collection: str) -> str:
        """Store URI for ``collection`` (the one ``connectors.open_store`` takes)."""

    @abstractmethod
    def create(self, collection: str, ids: Sequence[RecordId], vectors: np.ndarray, *,
               metric: str = "cosine", rich: bool = True) -> None:
        """Create ``collection`` with the native client and insert the records.

        ``rich=True`` attaches everything the backend can hold beside the vector, deterministic per
        record: payload / scalar fields / JSON / metadata / documents / a second named vector,
        so the contract suite can prove an update leaves them byte-identical.
        """

    @abstractmethod
    def snapshot(self, collection: str) -> dict[RecordId, bytes]:
        """Everything stored per record except the vector nudge-sync may write, canonically
        serialised (e.g. JSON with sorted keys, other vectors as raw float32 bytes)."""

    @abstractmethod
    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        """The target vector of every record, read with the native client (float32)."""

    @abstractmethod
    def count(self, collection: str) -> int:
        """Number of records, as the database itself counts them."""

    @abstractmethod
    def drop(self, collection: str) -> None:
        """Delete the collection if it exists."""

    @abstractmethod
    def collections(self) -> list[str]:
        """Names of all collections in this database (to prove nothing was created/removed)."""

    def make_ids(self, n: int, id_type: str | None = None, offset: int = 0) -> list[RecordId]:
        """Deterministic ids of the given type."""
        id_type = id_type or self.id_types[0]
        if id_type == "int":
            return [offset + i * 7 + 1 for i in range(n)]  # sparse, not 0..n-1
        if id_type == "uuid":
            import uuid

            return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"rec-{offset + i}")) for i in range(n)]
        return [f"doc-{offset + i:06d}" for i in range(n)]

    # Optional capabilities (override where the backend supports them) ----------------------------

    def unreachable_uri(self, collection: str) -> str | None:
        """A URI pointing at a closed port (servers only)."""
        return None

    def bad_credentials_uri(self, collection: str) -> tuple[str, dict[str, str]] | None:
        """(URI, env) that reach a server requiring auth with wrong credentials; None if untestable."""
        return None

    def create_auto_id(self, collection: str, dim: int) -> bool:
        """Create a collection whose primary key is auto-generated (Milvus). False if N/A."""
        return False

    def extra(self) -> dict[str, Any]:
        """Facts for test reports (server version ...)."""
        return {}


def random_vectors(n: int, dim: int, seed: int = 0, *, normalize: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    if normalize:
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def fast_tmp_dir(prefix: str, fallback: Path) -> Path:
    """A fresh directory on tmpfs when available, else under ``fallback``; the caller removes it.

    The embedded engines commit through SQLite or their own files, so on disk their writes wait for
    fsync (Qdrant local mode: 5,000 upserts 53 s under /tmp, 2.4 s under /dev/shm; Chroma
    persistent: 30 batch updates 1.7 s vs 0.7 s; Milvus Lite: 30 upserts 0.41 s vs 0.05 s) -- the
    same engines and files without the wait. ``NUDGE_SYNC_QDRANT_TMP=DIR`` picks another parent."""
    parent = os.environ.get("NUDGE_SYNC_QDRANT_TMP")
    if parent is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        parent = "/dev/shm"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent or fallback))
