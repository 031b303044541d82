"""Argument checks of the NUDGE estimators (internal): scalars, matrices, ids, γ."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_scalar(x: Any, name: str) -> float:
    if isinstance(x, (list, tuple, np.ndarray)):
        arr = np.asarray(x, dtype=object).reshape(-1)
        if arr.size != 1:
            raise ValueError(f"{name} must be a single number, got {x!r}")
        x = arr[0]
    if isinstance(x, bool):
        raise ValueError(f"{name} must be a number, got {x!r}")
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None


def check_gamma(gamma: Any, family: str) -> float:
    g = check_scalar(gamma, "gamma")
    if not (np.isfinite(g) and g >= 0):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if family == "n" and g > 4:
        raise ValueError(f"gamma must be <= 4 for NUDGE-N (γ bounds the squared step on the unit sphere), got {g}")
    return g


def check_matrix(x: Any, name: str, d: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists etc.
        raise ValueError(f"{name} must be a 2-d numeric array: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-d (n, d), got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has dimension {arr.shape[1]} but base_vectors has {d}")
    for r0 in range(0, arr.shape[0], 65536):
        blk = arr[r0 : r0 + 65536]
        fin = np.isfinite(blk).all(axis=1)
        if not fin.all():
            raise ValueError(f"{name} contains non-finite values (first bad row {r0 + int(np.argmin(fin))})")
    return arr


def check_base_ids(base_ids: Any, n: int) -> np.ndarray:
    if base_ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(base_ids).reshape(-1)
    if ids.size != n:
        raise ValueError(f"base_ids has {ids.size} entries but base_vectors has {n} rows")
    if ids.size and ids.dtype.kind not in "iu":
        raise ValueError(f"base_ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if np.any(ids < 0):
        raise ValueError(f"base_ids must be non-negative, got {ids[np.argmax(ids < 0)]}")
    s = np.sort(ids)
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size:
        raise ValueError(f"base_ids must be unique; {s[dup[0]]} appears more than once")
    return ids


def lookup_rows(ids: np.ndarray, order: np.ndarray, wanted: np.ndarray, what: str, where: str) -> np.ndarray:
    """Row of each wanted id in ``ids`` (``order`` = argsort(ids)); clear error when missing."""
    if wanted.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.size == 0:
        raise ValueError(f"{what} refers to record {int(wanted[0])}, which is not in {where}")
    sid = ids[order]
    pos = np.minimum(np.searchsorted(sid, wanted), sid.size - 1)
    miss = sid[pos] != wanted
    if miss.any():
        raise ValueError(f"{what} refers to record {int(wanted[np.argmax(miss)])}, which is not in {where} "
                         "(every record a training query answers must be among the base vectors)")
    return order[pos]
