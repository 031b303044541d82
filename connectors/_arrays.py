"""Array plumbing every backend repeats: slices of a batch, rows of floats as float32, and the
read-back tolerance of a database that re-normalises what it stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._errors import InvalidVectors

__all__ = ["RENORMALISED_TOLERANCE", "as_vectors", "chunks", "float32_rows"]

#: How far (per component, relative to the vector's norm) a vector read back from a database that
#: re-normalises on write (Qdrant and Chroma cosine collections, memory:// mimicking them) may be
#: from the one written: about one float32 ulp of the norm, with room for the database's own rounding.
RENORMALISED_TOLERANCE = 1e-6


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, each at most ``size`` long."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def float32_rows(rows: Any, dimension: int) -> np.ndarray:
    """Rows of numbers a client handed back (lists of Python floats, float64 arrays of parsed JSON)
    as a C-contiguous float32 ``(n, d)`` array; ``(0, dimension)`` when there are none. The values
    were float32 in the database, so the cast back is exact."""
    if rows is None or len(rows) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def as_vectors(vectors: Any, dimension: int, *, what: str = "vectors", n: int | None = None) -> np.ndarray:
    """Validate and convert to a C-contiguous float32 ``(n, dimension)`` array, or raise InvalidVectors.

    Non-finite values are reported with the row index so the caller can name the record.
    """
    arr = np.asarray(vectors)
    if arr.ndim == 1 and n is None and arr.shape[0] == dimension:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidVectors(f"{what}: expected a 2-D array of shape (n, {dimension}), got shape {arr.shape}")
    if arr.shape[1] != dimension:
        raise InvalidVectors(f"{what}: dimension {arr.shape[1]} does not match the collection's dimension {dimension}")
    if n is not None and arr.shape[0] != n:
        raise InvalidVectors(f"{what}: {arr.shape[0]} vectors for {n} ids")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidVectors(f"{what}: dtype {arr.dtype} is not a real number type")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidVectors(
            f"{what}: {bad.size} vector(s) contain NaN or inf (or overflow float32), first at row(s) {bad[:5].tolist()}"
        )
    return out
