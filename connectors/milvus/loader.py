"""Creating a Milvus collection with its recommended schema (demo, benchmarks, examples)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from .._base import RecordId, as_vectors, check_ids
from .._errors import InvalidURI, InvalidVectors, UnsupportedCollection
from .._uri import StoreConfig
from .client import METRIC_TO_MILVUS, STRONG, _Connection, _check_name
from .layout import _chunks, _rows_per_page


# -- loader ------------------------------------------------------------------------------------------


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create ``config.collection`` and insert the records (demo and benchmark loader).

    Schema: primary key ``id`` (INT64 when every id is an int, else VARCHAR), ``vector``
    (FLOAT_VECTOR; FLAT index up to 100,000 records -- exact -- AUTOINDEX above), ``document``
    (VARCHAR, when documents are given; None becomes ""), payload keys as dynamic fields; Strong
    consistency. A Milvus Lite ``.db`` is created if needed (``open_store`` never creates one).
    """
    _check_name(config.collection)
    ids = check_ids(ids)
    vecs = np.asarray(vectors)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
    vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
    kinds = {type(i) for i in ids}
    if len(kinds) > 1:
        raise InvalidVectors("Milvus primary keys are all int or all str; got a mix")
    if len(set(ids)) != len(ids):
        raise InvalidVectors(f"duplicate ids in {config.collection!r}")
    if config.transport == "local":
        path = Path(config.location)
        if path.suffix != ".db":
            raise InvalidURI(f"Milvus Lite databases are paths ending in .db; got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            MilvusClient(str(path)).close()  # creates the Milvus Lite database
    conn = _Connection(config)
    name = config.collection
    try:
        if conn.exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        client = conn.client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        if kinds == {str}:
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
        else:
            schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vecs.shape[1])
        if documents is not None:
            schema.add_field("document", DataType.VARCHAR, max_length=65_535)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="FLAT" if len(ids) <= 100_000 else "AUTOINDEX",
                        metric_type=METRIC_TO_MILVUS[metric])
        with conn.calls("create_collection", name, write=True):
            client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG,
                                     timeout=conn.timeout)
        step = max(1, min(5000, _rows_per_page(vecs.shape[1])))
        for part in _chunks(len(ids), step):
            rows = []
            for j in range(part.start, part.stop):
                row = dict(payloads[j]) if payloads else {}
                row.update(id=ids[j], vector=vecs[j].tolist())
                if documents is not None:
                    row["document"] = documents[j] or ""
                rows.append(row)
            with conn.calls("insert", name, write=True):
                client.insert(name, rows, timeout=conn.timeout)
    finally:
        conn.close()
