"""Creating a Qdrant collection with its recommended schema (demo, benchmarks, examples)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models

from .._base import RecordId, as_vectors, check_ids
from .._errors import InvalidVectors, UnsupportedCollection
from .._uri import StoreConfig
from .client import METRIC_TO_DISTANCE, _Connection, _acquire_local, _release_local
from .layout import _Layout, _impossible, _point_id


# -- loader ----------------------------------------------------------------------------------------


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create ``config.collection`` and upsert the records (demo and benchmark loader).

    One unnamed vector, or the named vector ``vector=`` names. A local directory is created if
    needed (``open_store`` never creates one). Payloads become the Qdrant payload; documents go in
    it under ``"document"``. Refuses an existing collection and ids Qdrant cannot hold.
    """
    ids = check_ids(ids)
    keys = [_point_id(i) for i in ids]
    impossible = [i for i, k in zip(ids, keys) if k is None]
    if impossible:
        raise InvalidVectors(_impossible(impossible))
    vecs = np.asarray(vectors)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
    vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
    for what, rows in (("payloads", payloads), ("documents", documents)):
        if rows is not None and len(rows) != len(ids):
            raise InvalidVectors(f"{len(rows)} {what} for {len(ids)} ids")
    if config.transport == "local":
        Path(config.location).mkdir(parents=True, exist_ok=True)
        _acquire_local(config.location)  # creates the database files (meta.json)
        _release_local(config.location)
    conn = _Connection(config)
    name = config.collection
    try:
        if conn.exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        params = models.VectorParams(size=vecs.shape[1], distance=METRIC_TO_DISTANCE[metric])
        vector_name = config.option("vector")
        lay = _Layout(vector_name or None, vecs.shape[1], params.distance.value, "float32")
        with conn.calls("create_collection", name, write=True):
            conn.client.create_collection(name, vectors_config={vector_name: params} if vector_name else params)
        batch = 1000 if config.is_server else 4096
        for start in range(0, len(ids), batch):
            points = []
            for j in range(start, min(start + batch, len(ids))):
                payload = dict(payloads[j]) if payloads else {}
                if documents:
                    payload["document"] = documents[j]
                points.append(models.PointStruct(id=keys[j], vector=lay.wrap(vecs[j].tolist()), payload=payload))
            with conn.calls("upsert", name, write=True):
                conn.client.upsert(name, points=points, wait=True)
    finally:
        conn.close()
