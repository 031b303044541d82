"""What a Chroma collection looks like to the store: names, its hnsw space and metric, embeddings as
float32 arrays, and the read-back comparison for cosine collections."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np


# -- helpers -----------------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _as_float32(rows: Any, dimension: int) -> np.ndarray:
    # chromadb returns float64 (HTTP: parsed JSON) holding float32 values: the cast back is exact.
    if rows is None or len(rows) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def _space_of(collection: Any) -> tuple[str, str]:
    """``(space, where it was found)`` for a collection, newest API first."""
    config = getattr(collection, "configuration_json", None) or {}
    for index in ("hnsw", "spann"):
        section = config.get(index) if isinstance(config, Mapping) else None
        if isinstance(section, Mapping) and section.get("space"):
            return str(section["space"]), f"configuration.{index}.space"
    try:  # deserialising the schema may rebuild (never call) an embedding function: tolerate failures
        schema = collection.schema
        entry = schema.keys.get("#embedding") if schema is not None else None
        space = entry.float_list.vector_index.config.space if entry is not None else None
        if space:
            return str(space), "schema.#embedding.space"
    except Exception:
        pass
    metadata = collection.metadata or {}
    if metadata.get("hnsw:space"):
        return str(metadata["hnsw:space"]), "metadata.hnsw:space"
    return "l2", "default"


#: Cosine collections hand back a copy about one float32 ulp of the norm off what was written.
_COSINE_TOLERANCE = 1e-6


def _same_vector(got: np.ndarray, want: np.ndarray, exact: bool) -> bool:
    if exact:
        return np.array_equal(got, want)
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
    return diff <= _COSINE_TOLERANCE * float(np.linalg.norm(want.astype(np.float64))) + 1e-30


def _to_scores(distances: Sequence[float], space: str) -> list[float]:
    d = np.asarray(distances, dtype=np.float64)
    scores = -d if space == "l2" else 1.0 - d
    return scores.tolist()


def _ef_name(collection: Any) -> str | None:
    config = getattr(collection, "configuration_json", None) or {}
    ef = config.get("embedding_function") if isinstance(config, Mapping) else None
    if isinstance(ef, Mapping):
        return str(ef.get("name") or ef.get("type"))
    return None
