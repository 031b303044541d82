"""Array plumbing every backend repeats: slices of a batch, rows of floats as float32, and the
read-back tolerance of a database that re-normalises what it stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["RENORMALISED_TOLERANCE", "chunks", "float32_rows"]

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
