"""Everything a database holds, read with its own client, as comparable text.

``dump_collection`` reads one collection (any layout: user data, query log, state) record by
record -- ids, every vector as raw float32 bytes, payload / scalar fields / metadata / documents --
into ``{record id: canonical JSON}``. ``dump_database`` does it for every collection, so a test can
prove that a refused command left the whole database byte for byte as it was, collections list
included.

``embedded_client`` opens an embedded database (Qdrant local directory, Milvus Lite file, Chroma
directory) with its native client and *releases it completely* on exit: Qdrant local mode and Milvus
Lite allow one process at a time on a path, so a test must never hold a client while a
``nudge-sync`` process runs on the same database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: Rows one Milvus query returns at most (the dumps are for the small databases of tests).
MILVUS_WINDOW = 16_384


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)


def _vector_hex(value: Any) -> str:
    return np.asarray(value, dtype=np.float32).tobytes().hex()


def dump_collection(backend: str, client: Any, name: str) -> dict[str, str]:
    """``{record id: canonical JSON of everything stored for it}``, read with the native client."""
    dump = {"qdrant": _dump_qdrant, "milvus": _dump_milvus, "chroma": _dump_chroma, "memory": _dump_memory}
    return dump[backend](client, name)


def collection_names(backend: str, client: Any) -> list[str]:
    if backend == "qdrant":
        return sorted(c.name for c in client.get_collections().collections)
    if backend in ("milvus", "memory"):
        return sorted(client.list_collections())
    return sorted(c.name for c in client.list_collections())


def dump_database(backend: str, client: Any) -> dict[str, dict[str, str]]:
    """``{collection: dump_collection(...)}`` for every collection of the database."""
    return {name: dump_collection(backend, client, name) for name in collection_names(backend, client)}


def _dump_qdrant(client: Any, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    offset = None
    while True:
        points, offset = client.scroll(name, limit=1000, offset=offset, with_payload=True, with_vectors=True)
        for p in points:
            vectors = p.vector if isinstance(p.vector, dict) else {"": p.vector}
            out[str(p.id)] = _canonical({"payload": p.payload,
                                         "vectors": {k: _vector_hex(v) for k, v in vectors.items()}})
        if offset is None:
            return out


def _dump_milvus(client: Any, name: str) -> dict[str, str]:
    from pymilvus import DataType

    desc = client.describe_collection(name)
    pk = next(f["name"] for f in desc["fields"] if f.get("is_primary"))
    vector_fields = {f["name"] for f in desc["fields"] if f.get("type") == DataType.FLOAT_VECTOR}
    client.load_collection(name)
    rows = client.query(name, filter="", output_fields=["*"], limit=MILVUS_WINDOW, consistency_level="Strong")
    if len(rows) >= MILVUS_WINDOW:
        raise ValueError(f"{name} has {MILVUS_WINDOW:,} rows or more: too many to dump in one query")
    return {str(row[pk]): _canonical({k: _vector_hex(v) if k in vector_fields else v for k, v in row.items()})
            for row in rows}


def _dump_chroma(client: Any, name: str) -> dict[str, str]:
    coll = client.get_collection(name, embedding_function=None)
    got = coll.get(include=["embeddings", "metadatas", "documents"])
    out = {rid: _canonical({"embedding": _vector_hex(e), "metadata": m, "document": d})
           for rid, e, m, d in zip(got["ids"], got["embeddings"], got["metadatas"], got["documents"])}
    out["<collection>"] = _canonical({"metadata": coll.metadata})
    return out


def _dump_memory(client: Any, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    offset = 0
    while page := client.scan(name, offset, 4096):
        offset += len(page)
        out.update({str(i): _canonical({"payload": payload, "vector": _vector_hex(vec)}) for i, vec, payload in page})
    coll = client.collection(name)
    out["<collection>"] = _canonical({"dimension": coll.dimension, "metric": coll.metric, "id_type": coll.id_type,
                                      "metadata": coll.metadata})
    return out


@contextmanager
def embedded_client(backend: str, location: Path) -> Iterator[Any]:
    """The native client of an embedded database at ``location``, fully released afterwards."""
    location = Path(location).resolve()
    if backend == "qdrant":
        from qdrant_client import QdrantClient

        client = QdrantClient(path=str(location))
        try:
            yield client
        finally:
            client.close()
    elif backend == "milvus":
        from milvus_lite.server_manager import server_manager_instance
        from pymilvus import MilvusClient

        client = MilvusClient(uri=str(location), dedicated=True)
        try:
            yield client
        finally:
            client.close()
            server_manager_instance.release_server(str(location))  # the engine and its file lock
    else:
        import chromadb
        from chromadb.api.shared_system_client import SharedSystemClient

        client = chromadb.PersistentClient(path=str(location))
        try:
            yield client
        finally:
            client.close()
            SharedSystemClient.clear_system_cache()  # the next client reads the files afresh
