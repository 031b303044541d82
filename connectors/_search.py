"""The search rules every backend shares: the ``k`` check, and the over-fetch-and-widen kNN search
that leaves out excluded ids without sending them all to the database.

A filter of many ids is slow or refused (request sizes, expression lengths), and Qdrant's local mode
scans every point for one. Few of the excluded ids usually sit near a given query, so
:func:`search_excluding` asks for ``k`` plus a few more hits, drops the excluded ones, and asks again
with a larger window only for the queries left with fewer than ``k``. Each backend passes its own
window limits and its raw search call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._base import RecordId
from ._errors import InvalidVectors

__all__ = ["Hits", "check_k", "search_excluding"]

logger = logging.getLogger(__name__)

#: One query's hits, best first: ``(id, similarity)``.
Hits = list[tuple[RecordId, float]]


def check_k(k: Any, *, window: int | None = None, backend: str = "") -> int:
    """``k`` as a non-negative int (numpy integers accepted; bools refused), or InvalidVectors;
    ``window`` is the most results the database returns for one query (None: no limit)."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidVectors(f"k must be a non-negative int, got {k!r}")
    if window is not None and k > window:
        raise InvalidVectors(f"k={k} is larger than {backend}' search window of {window:,} results")
    return int(k)


def search_excluding(
    n_queries: int,
    k: int,
    excluded: set[RecordId],
    fetch: Callable[[list[int], int, Sequence[RecordId]], list[Hits]],
    *,
    ceiling: int,
    first_extra: int,
    growth: int,
    filter_limit: int | None = None,
) -> list[Hits]:
    """Per query, its best hits (at least ``k`` where the collection has them) with no excluded id.

    ``fetch(positions, n, filtered)`` returns the top ``n`` hits of the queries at ``positions``,
    leaving out the ids in ``filtered`` by a database filter. The first window is ``k`` plus up to
    ``max(k, first_extra)`` more; a query short of ``k`` survivors after a full window is asked again
    with a window ``growth`` times larger, up to ``ceiling``.

    ``filter_limit`` None: the filter stays empty, and ``ceiling`` must leave ``k`` survivors whatever
    happens (``k`` + every excluded id, or the collection's size). Otherwise the excluded ids met so
    far go into the filter of the next round (all of them once more than ``filter_limit`` were met);
    a short query always met excluded ids not yet filtered, so the filter grows every round and the
    loop ends at the latest with every excluded id filtered.
    """
    rows: list[Hits] = [[] for _ in range(n_queries)]
    n = min(ceiling, k + min(len(excluded), max(k, first_extra)))
    filtered: set[RecordId] = set()
    todo = list(range(n_queries))
    while todo and n > 0:
        if filter_limit is not None and len(filtered) > filter_limit:
            filtered = excluded
        again = []
        for qi, hits in zip(todo, fetch(todo, n, sorted(filtered, key=str))):
            rows[qi] = [h for h in hits if h[0] not in excluded]
            if len(rows[qi]) < k and len(hits) >= n and _can_widen(n, ceiling, filter_limit, filtered, excluded):
                if filter_limit is not None:
                    filtered |= {h[0] for h in hits if h[0] in excluded}
                again.append(qi)
        todo, n = again, min(ceiling, n * growth)
        if todo:
            logger.debug("%d of %d queries short of k=%d survivors: asking again for %d hits, %d ids filtered",
                         len(todo), n_queries, k, n, len(filtered))
    return rows


def _can_widen(n: int, ceiling: int, filter_limit: int | None, filtered: set[RecordId], excluded: set[RecordId]) -> bool:
    """Whether asking again can find more survivors: a larger window, or a filter still to grow."""
    if filter_limit is None:
        return n < ceiling
    return filtered is not excluded
