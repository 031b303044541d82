"""Excluded kNN search on Milvus: over-fetch, widen for the queries that need it, map hits to ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .._arrays import chunks
from .._base import RecordId, SearchResult, as_vectors, check_ids, dedupe, pad_results
from .._search import Hits, check_k, search_excluding
from .client import MAX_WINDOW, STRONG, _FILTER_IDS, _SEARCH_ROWS
from .layout import _hit_id, in_expression


class MilvusSearch:
    """The search half of :class:`~connectors.milvus.store.MilvusStore` (it uses the store's
    connection and layout)."""

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        lay = self.layout()
        qs = as_vectors(queries, lay.dim, what="queries")
        k = check_k(k, window=MAX_WINDOW, backend="Milvus")
        excluded = set(lay.valid(dedupe(check_ids(list(exclude)))))
        if k == 0 or len(qs) == 0:
            return pad_results([[] for _ in range(len(qs))], k)
        if len(excluded) <= _FILTER_IDS:
            return pad_results(self._search(qs, k, sorted(excluded, key=str)), k)
        # Too many ids for one filter expression: over-fetch, and filter only the excluded ids that
        # turn up near the queries left short (all of them once more than a filter's worth did).
        rows = search_excluding(len(qs), k, excluded, lambda todo, n, filtered: self._search(qs[todo], n, filtered),
                                ceiling=MAX_WINDOW, first_extra=64, growth=2, filter_limit=_FILTER_IDS)
        return pad_results(rows, k)

    def _search(self, qs: np.ndarray, limit: int, excluded: Sequence[RecordId]) -> list[Hits]:
        lay = self.layout()
        expr = in_expression(lay.pk, excluded, negate=True) if excluded else ""
        negate = lay.metric == "L2"  # squared distance -> similarity
        out: list[Hits] = []
        per_call = max(1, min(1024, _SEARCH_ROWS // max(limit, 1)))
        for part in chunks(len(qs), per_call):
            with self._calls("search"):
                res = self._on_loaded(self.name, "search", lambda: self.client.search(
                    self.name, data=qs[part].tolist(), limit=limit, filter=expr, anns_field=lay.vector,
                    output_fields=[lay.pk], search_params={"metric_type": lay.metric},
                    consistency_level=STRONG, timeout=self.conn.timeout))
            for hits in res:
                out.append([(_hit_id(h, lay.pk), -float(h["distance"]) if negate else float(h["distance"]))
                            for h in hits])
        return out
