"""Excluded kNN search on Milvus: over-fetch, widen for the queries that need it, map hits to ids."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._base import RecordId, SearchResult, as_vectors, check_ids, dedupe, pad_results
from .._errors import InvalidVectors
from .client import MAX_WINDOW, STRONG, _FILTER_IDS, _SEARCH_ROWS
from .layout import _chunks, _hit_id, _in


class MilvusSearch:
    """The search half of :class:`~connectors.milvus.store.MilvusStore` (it uses the store's
    connection and layout)."""

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        lay = self.layout()
        qs = as_vectors(queries, lay.dim, what="queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidVectors(f"k must be a non-negative int, got {k!r}")
        k = int(k)
        if k > MAX_WINDOW:
            raise InvalidVectors(f"k={k} is larger than Milvus' search window of {MAX_WINDOW:,} results")
        excluded = set(lay.valid(dedupe(check_ids(list(exclude)))))
        rows: list[list[tuple[RecordId, float]]] = [[] for _ in range(len(qs))]
        if k == 0 or len(qs) == 0:
            return pad_results(rows, k)
        if len(excluded) <= _FILTER_IDS:
            for qi, hits in zip(range(len(qs)), self._search(qs, k, sorted(excluded, key=str))):
                rows[qi] = hits
            return pad_results(rows, k)
        return pad_results(self._search_excluding_many(qs, k, excluded), k)

    def _search_excluding_many(self, qs: np.ndarray, k: int, excluded: set[RecordId]) -> list[list[tuple[RecordId, float]]]:
        """Over-fetch, drop excluded hits, re-search the short queries with a filter of the excluded
        ids met so far (see the module docstring). A query is re-searched only when more than
        ``n - k`` of its ``n`` hits were excluded ids not yet in the filter, so the filter grows every
        round and the loop ends (at the latest with the full list)."""
        rows: list[list[tuple[RecordId, float]]] = [[] for _ in range(len(qs))]
        n = min(MAX_WINDOW, k + min(len(excluded), max(k, 64)))
        met: set[RecordId] = set()
        todo = list(range(len(qs)))
        while todo:
            if len(met) > _FILTER_IDS:  # neighbourhoods full of excluded ids: filter them all at once
                met = excluded
            hits_per_query = self._search(qs[todo], n, sorted(met, key=str))
            again = []
            for qi, hits in zip(todo, hits_per_query):
                rows[qi] = [h for h in hits if h[0] not in excluded]
                if len(rows[qi]) < k and len(hits) == n and met is not excluded:
                    met |= {h[0] for h in hits if h[0] in excluded}
                    again.append(qi)
            todo, n = again, min(MAX_WINDOW, 2 * n)
        return rows

    def _search(self, qs: np.ndarray, limit: int, excluded: list[RecordId]) -> list[list[tuple[RecordId, float]]]:
        lay = self.layout()
        expr = _in(lay.pk, excluded, negate=True) if excluded else ""
        negate = lay.metric == "L2"  # squared distance -> similarity
        out: list[list[tuple[RecordId, float]]] = []
        per_call = max(1, min(1024, _SEARCH_ROWS // max(limit, 1)))
        for part in _chunks(len(qs), per_call):
            with self._calls("search"):
                res = self._on_loaded(self.name, "search", lambda: self.client.search(
                    self.name, data=qs[part].tolist(), limit=limit, filter=expr, anns_field=lay.vector,
                    output_fields=[lay.pk], search_params={"metric_type": lay.metric},
                    consistency_level=STRONG, timeout=self.conn.timeout))
            for hits in res:
                out.append([(_hit_id(h, lay.pk), -float(h["distance"]) if negate else float(h["distance"]))
                            for h in hits])
        return out
