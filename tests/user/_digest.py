"""Digests of whole collections (data, log or state), read with the database's own client: the proof
that a refused or idle command wrote nothing -- no record added, removed or changed, vectors
included, bit for bit.

The functions take an open harness (``UserBackend.native()``), so one open of an embedded database
serves every collection a check reads (an open of Milvus Lite or Qdrant local mode costs more than
the reads).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from tests.backends import Harness


def digest(h: Harness, name: str) -> tuple[int, str]:
    """(record count, one digest of every record: id, vectors and everything else) of ``name``."""
    if h.backend == "qdrant":
        points, _ = h.client.scroll(name, limit=100_000, with_payload=True, with_vectors=True)
        rows = [{"id": p.id, "payload": p.payload, "vector": p.vector} for p in points]
    elif h.backend == "milvus":
        h.client.load_collection(name)
        rows = h.client.query(name, filter="", output_fields=["*"], limit=16_384, consistency_level="Strong")
    else:
        got = h.client.get_collection(name, embedding_function=None).get(
            include=["embeddings", "metadatas", "documents"])
        rows = [{"id": i, "vector": np.asarray(e, np.float32).tobytes().hex(), "meta": m, "doc": d}
                for i, e, m, d in zip(got["ids"], got["embeddings"], got["metadatas"], got["documents"])]
    text = sorted(json.dumps(r, sort_keys=True, default=_plain) for r in rows)
    return len(rows), hashlib.sha256("\n".join(text).encode()).hexdigest()


def digests(h: Harness, *names: str) -> dict[str, object]:
    """The digest of each of ``names``, and the sorted names of every collection in the database
    (a refused command must neither create nor drop one)."""
    return {**{n: digest(h, n) for n in names}, "": sorted(h.collections())}


def _plain(value: object) -> object:
    """numpy values and float vectors as exact text (every bit counts)."""
    if isinstance(value, np.ndarray):
        return np.asarray(value, np.float32).tobytes().hex()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
