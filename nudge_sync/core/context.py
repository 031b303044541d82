"""Validation context: what the records that will NOT move look like to each validation query.

NUDGE only moves the records that answer a training query. Every other record is a constant
competitor during the γ search, and only its best ``k`` scores per validation query can ever
matter to a top-``k`` metric (the reference's "nontrain embeddings" trick). A context stores exactly
that: for each validation query, the top-``k`` (id, score) among those records, best first by
(score desc, id asc), padded with id -1 / score -inf.

It can come from anywhere: a database's own kNN search with the moving records excluded (the sync
engine's ``search`` mode: cost grows with the labels, not with the collection), or an exact
streamed pass over the vectors (:meth:`ValidationContext.from_corpus`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import merge_topk, stream_topk

__all__ = ["ValidationContext"]


class ValidationContext:
    """Per validation query, the top-``k`` ids and scores among the records that do not move."""

    __slots__ = ("ids", "scores")

    def __init__(self, ids: Any, scores: Any):
        ids = np.asarray(ids)
        scores = np.asarray(scores, dtype=np.float64)
        if ids.ndim != 2 or scores.shape != ids.shape:
            raise ValueError(f"context ids {ids.shape} and scores {scores.shape} must be the same 2-d shape")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"context ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64)
        pad = ids < 0
        if np.any(np.isnan(scores)) or np.any(np.isposinf(scores)):
            row = int(np.flatnonzero(np.any(np.isnan(scores) | np.isposinf(scores), axis=1))[0])
            raise ValueError(f"context scores must be finite or -inf padding (first bad row {row})")
        if np.any(np.isneginf(scores) & ~pad):
            row = int(np.flatnonzero(np.any(np.isneginf(scores) & ~pad, axis=1))[0])
            raise ValueError(f"context row {row}: a real id has score -inf (use id -1 for padding)")
        scores = np.where(pad, -np.inf, scores)
        # Keep the documented order even if a caller (a database search) returned ties differently.
        from .metrics import _topk_rows

        self.ids, self.scores = _topk_rows(scores, np.where(pad, -1, ids), ids.shape[1])

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return f"ValidationContext(n_val={len(self)}, k={self.k})"

    @classmethod
    def empty(cls, n_val: int, k: int) -> ValidationContext:
        return cls(np.full((n_val, k), -1, dtype=np.int64), np.full((n_val, k), -np.inf))

    @classmethod
    def from_corpus(
        cls,
        queries: np.ndarray,
        corpus: Any,
        k: int,
        *,
        ids: Any = None,
        exclude: Any = None,
        normalize: bool = True,
        block_size: int = 8192,
    ) -> ValidationContext:
        """Exact context by streaming ``corpus`` (an array, or an iterable of ``(ids, vectors)``
        blocks) with a running top-``k`` merge; never allocates ``n_val x N``.

        ``exclude``: ids to skip (the records that will move). ``normalize``: score by cosine
        (records L2-normalised, queries as given), as the reference scores its nontrain records.
        """
        top_ids, top_s = stream_topk(queries, corpus, k, ids=ids, exclude=exclude,
                                     normalize=normalize, block_size=block_size)
        return cls(top_ids, top_s)

    def merge(self, other: ValidationContext, k: int | None = None) -> ValidationContext:
        """Top-``k`` of the union of two contexts over the same queries (repeated ids kept once).

        ``k`` defaults to the larger width; the result is exact as long as each input is the
        complete top-(its k) of its own record set and ``k`` does not exceed the smaller width
        unless the narrower context is complete (padded).
        """
        if len(other) != len(self):
            raise ValueError(f"cannot merge contexts over {len(self)} and {len(other)} queries")
        k = max(self.k, other.k) if k is None else int(k)
        ids, s = merge_topk(self.ids, self.scores, other.ids, other.scores, k, dedupe=True)
        return ValidationContext(ids, s)

    def take(self, rows: Any) -> ValidationContext:
        rows = np.asarray(rows, dtype=np.int64)
        return ValidationContext(self.ids[rows], self.scores[rows])

    def truncate(self, k: int) -> ValidationContext:
        return ValidationContext(self.ids[:, :k], self.scores[:, :k])
