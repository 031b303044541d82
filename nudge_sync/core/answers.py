"""Answer lists (ground truth) in CSR form.

Row ``i`` holds the global record ids that answer query ``i`` and, optionally, their graded
relevance. CSR keeps a million labelled queries in three flat arrays instead of a million Python
lists, and every algorithm in the core works on the flat arrays directly.

Duplicate ids inside one row are *merged* (keeping the largest grade), not rejected: query logs
routinely record the same click twice, and a duplicate carries no extra information for NUDGE (the
reference builds a dense 0/1 answer matrix, so duplicates collapse there too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["Answers", "as_answers"]


class Answers:
    """Ground-truth answers of a batch of queries, CSR encoded.

    Attributes
    ----------
    indptr : int64 array, length ``n + 1``; row ``i`` is ``ids[indptr[i]:indptr[i+1]]``.
    ids : int64 array of global record ids (non-negative, unique within a row, sorted per row).
    grades : float64 array aligned with ``ids`` (finite, > 0), or ``None`` meaning every grade is 1.
    """

    __slots__ = ("indptr", "ids", "grades")

    def __init__(self, indptr: np.ndarray, ids: np.ndarray, grades: np.ndarray | None = None):
        # Private-ish: use from_lists / from_csr, which validate. Kept public for cheap internal use.
        self.indptr = indptr
        self.ids = ids
        self.grades = grades

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_lists(
        cls,
        lists: Sequence[Sequence[int]],
        grades: Sequence[Sequence[float] | None] | None = None,
    ) -> Answers:
        """Build from ``[[id, ...], ...]`` and optional aligned ``[[grade, ...], ...]``.

        A ``None`` entry in ``grades`` means all grades of that row are 1.
        """
        lists = list(lists)
        lengths = np.fromiter((len(r) for r in lists), dtype=np.int64, count=len(lists))
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat: list[Any] = [x for r in lists for x in r]
        ids = _as_int_ids(flat, "answer ids")
        g = None
        if grades is not None:
            grades = list(grades)
            if len(grades) != len(lists):
                raise ValueError(f"grades has {len(grades)} rows but answers have {len(lists)}")
            gflat: list[float] = []
            for i, (r, gr) in enumerate(zip(lists, grades)):
                if gr is None:
                    gflat.extend([1.0] * len(r))
                    continue
                if len(gr) != len(r):
                    raise ValueError(f"grades row {i} has {len(gr)} values but answers row {i} has {len(r)} ids")
                gflat.extend(gr)
            g = np.asarray(gflat, dtype=np.float64).reshape(-1)
        return cls.from_csr(indptr, ids, g)

    @classmethod
    def from_csr(cls, indptr: Any, ids: Any, grades: Any = None) -> Answers:
        """Build from CSR arrays (validated, duplicates merged, rows sorted by id)."""
        indptr = np.asarray(indptr)
        if indptr.ndim != 1 or indptr.size == 0:
            raise ValueError("indptr must be a 1-d array of length n + 1 >= 1")
        if not np.issubdtype(indptr.dtype, np.integer):
            raise ValueError(f"indptr must be integers, got {indptr.dtype}")
        indptr = indptr.astype(np.int64)
        ids = _as_int_ids(ids, "answer ids")
        if indptr[0] != 0 or indptr[-1] != ids.size or np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must start at 0, be non-decreasing and end at len(ids)")
        g = None
        if grades is not None:
            g = np.asarray(grades, dtype=np.float64).reshape(-1)
            if g.size != ids.size:
                raise ValueError(f"grades has {g.size} values but there are {ids.size} answer ids")
            bad = np.flatnonzero(~(np.isfinite(g) & (g > 0)))
            if bad.size:
                row = int(np.searchsorted(indptr, bad[0], side="right") - 1)
                raise ValueError(f"grades must be finite and > 0; row {row} has grade {float(g[bad[0]])}")
        return cls._canonical(indptr, ids, g)

    @classmethod
    def _canonical(cls, indptr: np.ndarray, ids: np.ndarray, g: np.ndarray | None) -> Answers:
        """Sort each row by id and merge duplicate ids (max grade) -- vectorised."""
        n = indptr.size - 1
        if ids.size == 0:
            return cls(indptr.copy(), ids.copy(), None if g is None else g.copy())
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        gg = np.ones(ids.size) if g is None else g
        # Sort by (row, id, -grade): the first of each (row, id) run then holds the max grade.
        order = np.lexsort((-gg, ids, rows))
        r, i, w = rows[order], ids[order], gg[order]
        first = np.ones(r.size, dtype=bool)
        first[1:] = (r[1:] != r[:-1]) | (i[1:] != i[:-1])
        r, i, w = r[first], i[first], w[first]
        new_indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=new_indptr[1:])
        return cls(new_indptr, i, None if g is None else w)

    # -- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    def __repr__(self) -> str:
        return f"Answers(n={len(self)}, pairs={self.ids.size}, graded={self.grades is not None})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Answers):
            return NotImplemented
        return (
            np.array_equal(self.indptr, other.indptr)
            and np.array_equal(self.ids, other.ids)
            and np.array_equal(self.all_grades(), other.all_grades())
        )

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.indptr[i] : self.indptr[i + 1]]

    def row_grades(self, i: int) -> np.ndarray:
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return np.ones(hi - lo) if self.grades is None else self.grades[lo:hi]

    def all_grades(self) -> np.ndarray:
        """Grades aligned with ``ids`` (ones when ungraded)."""
        return np.ones(self.ids.size) if self.grades is None else self.grades

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row_index(self) -> np.ndarray:
        """Query row of every entry of ``ids``."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def tolist(self) -> list[list[int]]:
        return [self.row(i).tolist() for i in range(len(self))]

    def take(self, rows: Iterable[int] | np.ndarray) -> Answers:
        """Subset of rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        lens = self.lengths()[rows]
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        starts = self.indptr[rows]
        idx = np.repeat(starts - indptr[:-1], lens) + np.arange(indptr[-1])
        g = None if self.grades is None else self.grades[idx]
        return Answers(indptr, self.ids[idx], g)

    def drop_empty(self) -> tuple[Answers, np.ndarray]:
        """``(answers without empty rows, index of the kept rows)``."""
        kept = np.flatnonzero(self.lengths() > 0)
        return self.take(kept), kept


def as_answers(x: Any, name: str = "answers") -> Answers:
    """Accept an :class:`Answers` or a list of lists of ids."""
    if isinstance(x, Answers):
        return x
    if x is None:
        raise ValueError(f"{name} is required")
    try:
        return Answers.from_lists(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from e


def _as_int_ids(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    arr = arr.reshape(-1)
    if arr.dtype == object or arr.dtype.kind not in "iu":
        # Allow integral floats (e.g. from JSON), reject anything else with a clear message.
        try:
            f = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be integers") from None
        if not np.all(np.isfinite(f)) or np.any(f != np.round(f)):
            bad = np.flatnonzero(~np.isfinite(f) | (f != np.round(f)))[0]
            raise ValueError(f"{what} must be integers; got {arr[bad]}")
        arr = f
    out = arr.astype(np.int64)
    if np.any(out < 0):
        raise ValueError(f"{what} must be non-negative; got {out[np.argmax(out < 0)]}")
    return out
