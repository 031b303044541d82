"""Creating a Chroma collection with its recommended schema (demo, benchmarks, examples)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np

from .._base import RecordId, as_vectors, check_ids
from .._errors import InvalidVectors, UnsupportedCollection
from .._uri import StoreConfig
from .client import SPACE_TO_METRIC, _Connection, _check_name
from .layout import _chunks


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
