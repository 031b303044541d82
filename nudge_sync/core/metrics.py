"""Ranking, exact top-k search and retrieval metrics, shared by fitting, reports and benchmarks.

One tie rule everywhere: results are ordered by (score descending, id ascending). The γ search in
:mod:`nudge_sync.core.nudge` uses the same rule, so the validation score it optimises is exactly what
:func:`evaluate` reports on the transformed vectors.

Ranked results are ``(n_queries, k)`` int64 id arrays padded with -1 (score -inf).

Metric definitions (those of the NUDGE reference, ``util/utils.py``):

* ``recall@k``  capped recall ``|top-k ∩ A| / min(|A|, k)``;
* ``ndcg@k``    linear gain ``grade / log2(rank + 1)`` (rank from 1), ideal DCG from the query's own
  grades sorted in decreasing order (all its answers, retrieved or not);
* ``mrr@k``     ``1 / rank`` of the first answer within the top k, else 0;
* ``hit@k``     1 if any answer is in the top k.

A query without answers has no defined score: its per-query value is NaN and it is left out of
the mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .answers import Answers, as_answers

__all__ = [
    "METRICS",
    "parse_metric",
    "rank",
    "search_exact",
    "metric_per_query",
    "evaluate",
    "evaluate_per_query",
]

METRICS = ("ndcg", "recall", "mrr", "hit")
_ALIASES = {"ndcg": "ndcg", "recall": "recall", "r": "recall", "mrr": "mrr", "hit": "hit",
            "success": "hit", "acc": "hit"}
_SPEC = re.compile(r"^\s*([a-zA-Z]+)\s*@\s*(\d+)\s*$")

#: Bound on the (queries x rows) score block held at once by the streaming searches, in bytes.
BLOCK_BYTES = 16 << 20

_PAD_KEY = np.iinfo(np.int64).max  # padding ids (-1) sort after every real id


def parse_metric(spec: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``. Names: ndcg, recall (r), mrr, hit (success, acc)."""
    if not isinstance(spec, str):
        raise ValueError(f"metric must be a string like 'ndcg@10', got {spec!r}")
    m = _SPEC.match(spec)
    if not m or m.group(1).lower() not in _ALIASES:
        raise ValueError(f"unknown metric {spec!r}; expected one of ndcg@k, recall@k, mrr@k, hit@k")
    k = int(m.group(2))
    if k < 1:
        raise ValueError(f"metric {spec!r}: k must be >= 1")
    return _ALIASES[m.group(1).lower()], k


def canonical_metric(spec: str) -> str:
    name, k = parse_metric(spec)
    return f"{name}@{k}"


# -- ranking ------------------------------------------------------------------------------------


def rank(scores: np.ndarray, ids: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of every row of ``scores`` by (score desc, id asc).

    ``ids`` is ``(n,)`` (shared by all rows) or ``(n_queries, n)``; default ``arange(n)``. Entries
    with id -1 are padding and sort after everything else. Rows with fewer than ``k`` entries are
    padded with id -1 / score -inf. Returns ``(top_ids int64, top_scores float64)``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d (n_queries, n), got shape {scores.shape}")
    nq, n = scores.shape
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape not in ((n,), (nq, n)):
        raise ValueError(f"ids must have shape ({n},) or ({nq}, {n}), got {ids.shape}")
    ids2 = np.broadcast_to(ids, (nq, n))
    return _topk_rows(scores.astype(np.float64, copy=False), ids2, int(k))


def _topk_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    nq, n = scores.shape
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    out_s = np.full((nq, k), -np.inf)
    if nq == 0 or k == 0 or n == 0:
        return out_ids, out_s
    keys = np.where(ids < 0, _PAD_KEY, ids)
    if n <= k:
        order = np.lexsort((keys, -scores), axis=-1)
        out_ids[:, :n] = np.take_along_axis(ids, order, axis=1)
        out_s[:, :n] = np.take_along_axis(scores, order, axis=1)
        return out_ids, out_s
    # Partition first (O(n)); only the k survivors (plus boundary ties) are sorted.
    thr = np.partition(scores, n - k, axis=1)[:, n - k : n - k + 1]
    cand = scores >= thr
    counts = cand.sum(axis=1)
    exact = counts == k
    rows_ok = np.flatnonzero(exact)
    if rows_ok.size:
        sub = cand[rows_ok]
        r, c = np.nonzero(sub)  # row-major: k entries per row, in column order
        c = c.reshape(rows_ok.size, k)
        s = np.take_along_axis(scores[rows_ok], c, axis=1)
        i = np.take_along_axis(ids[rows_ok], c, axis=1)
        kk = np.take_along_axis(keys[rows_ok], c, axis=1)
        order = np.lexsort((kk, -s), axis=-1)
        out_ids[rows_ok] = np.take_along_axis(i, order, axis=1)
        out_s[rows_ok] = np.take_along_axis(s, order, axis=1)
    rows_tie = np.flatnonzero(~exact)
    if rows_tie.size:  # several entries tie at the k-th score: full sort of those rows (rare)
        s = scores[rows_tie]
        order = np.lexsort((keys[rows_tie], -s), axis=-1)[:, :k]
        out_ids[rows_tie] = np.take_along_axis(ids[rows_tie], order, axis=1)
        out_s[rows_tie] = np.take_along_axis(s, order, axis=1)
    return out_ids, out_s


def merge_topk(
    ids_a: np.ndarray, s_a: np.ndarray, ids_b: np.ndarray, s_b: np.ndarray, k: int, *, dedupe: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of two ranked lists per row. ``dedupe`` drops repeated ids (keeping the best score)."""
    ids = np.concatenate([ids_a, ids_b], axis=1)
    s = np.concatenate([s_a, s_b], axis=1).astype(np.float64, copy=False)
    if dedupe and ids.shape[1] > 1:
        ids = ids.copy()
        s = s.copy()
        order = np.lexsort((-s, ids), axis=-1)
        si = np.take_along_axis(ids, order, axis=1)
        dup = np.zeros_like(si, dtype=bool)
        dup[:, 1:] = (si[:, 1:] == si[:, :-1]) & (si[:, 1:] >= 0)
        rr, cc = np.nonzero(dup)
        cols = order[rr, cc]
        ids[rr, cols] = -1
        s[rr, cols] = -np.inf
    return _topk_rows(s, ids, k)


# -- streaming exact search ------------------------------------------------------------------------


def _blocks(corpus: Any, ids: Any, block_size: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(ids, vectors)`` blocks from an array (with optional ids) or an iterable of blocks."""
    if isinstance(corpus, np.ndarray) or (hasattr(corpus, "shape") and hasattr(corpus, "__array__")):
        arr = np.asarray(corpus)
        if arr.ndim != 2:
            raise ValueError(f"corpus must be 2-d (n, d), got shape {arr.shape}")
        if ids is None:
            ids = np.arange(arr.shape[0], dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size != arr.shape[0]:
            raise ValueError(f"ids has {ids.size} entries but corpus has {arr.shape[0]} rows")
        step = max(1, int(block_size))
        for r0 in range(0, arr.shape[0], step):  # views: no copy of the corpus
            yield ids[r0 : r0 + step], arr[r0 : r0 + step]
        return
    if ids is not None:
        raise ValueError("ids must be None when corpus is an iterable of (ids, vectors) blocks")
    for n, block in enumerate(corpus):
        try:
            bids, vecs = block
        except (TypeError, ValueError):
            raise ValueError(f"corpus block {n} is not an (ids, vectors) pair") from None
        vecs = np.asarray(vecs)
        bids = np.asarray(bids, dtype=np.int64).reshape(-1)
        if vecs.ndim != 2 or vecs.shape[0] != bids.size:
            raise ValueError(f"corpus block {n}: {bids.size} ids for vectors of shape {vecs.shape}")
        yield bids, vecs


def stream_topk(
    queries: np.ndarray,
    corpus: Any,
    k: int,
    *,
    ids: Any = None,
    exclude: Any = None,
    normalize: bool = False,
    block_size: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product (cosine if ``normalize``: record rows L2-normalised),
    streaming the corpus in row blocks with a running merge. Memory: the running ``(n_q, k)``
    lists, one score block bounded by :data:`BLOCK_BYTES` and its merge temporaries (at most about
    twice that, while the lists fill), plus a float64 normalised copy of one ``block_size`` block."""
    q = np.asarray(queries)
    if q.ndim != 2:
        raise ValueError(f"queries must be 2-d (n, d), got shape {q.shape}")
    check_finite(q, "queries")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    nq, d = q.shape
    best_ids = np.full((nq, k), -1, dtype=np.int64)
    best_s = np.full((nq, k), -np.inf)
    excl = None if exclude is None else np.unique(np.asarray(list(exclude) if isinstance(exclude, (set, frozenset)) else exclude, dtype=np.int64))
    # Query chunks and row chunks keep every score block under BLOCK_BYTES. At most 4096 queries
    # a chunk, so a block still spans >= 1024 rows: thin (queries x few rows) products run BLAS at
    # about half speed, and the matmul is most of the cost.
    q_chunk = max(1, min(nq, 4096))
    seen = 0
    for bids, vecs in _blocks(corpus, ids, block_size):
        if vecs.shape[1] != d:
            raise ValueError(f"corpus rows have dimension {vecs.shape[1]} but queries have {d}")
        check_finite(vecs, "corpus", offset=seen)
        seen += vecs.shape[0]
        if excl is not None and excl.size:
            keep = ~np.isin(bids, excl)
            bids, vecs = bids[keep], vecs[keep]
        if bids.size == 0 or nq == 0:
            continue
        dtype = np.result_type(q.dtype, vecs.dtype, np.float32)
        v = vecs.astype(dtype, copy=False)
        if normalize:
            v = normalize_rows(v).astype(dtype, copy=False)
        rows = max(1, min(int(block_size), BLOCK_BYTES // (np.dtype(dtype).itemsize * q_chunk)))
        qq = q.astype(dtype, copy=False)
        for r0 in range(0, v.shape[0], rows):
            vb = v[r0 : r0 + rows]
            ib = bids[r0 : r0 + rows]
            for q0 in range(0, nq, q_chunk):
                s = qq[q0 : q0 + q_chunk] @ vb.T
                _merge_block(best_ids[q0 : q0 + q_chunk], best_s[q0 : q0 + q_chunk], s, ib)
    return best_ids, best_s


def _merge_block(top_ids: np.ndarray, top_s: np.ndarray, s: np.ndarray, ib: np.ndarray) -> None:
    """In place: merge one score block ``s`` (queries x rows ``ib``) into the running top-k.

    Only scores reaching a query's running k-th can enter. After the first blocks few do, so one
    pass (the row maxima) finds the queries to update and the merge is sparse. While the lists
    are still filling (first block: every score qualifies) the block is first cut to its own
    top-k per query by value, ties at the cut kept, so nothing is sorted at block size."""
    k = top_ids.shape[1]
    thr = top_s[:, k - 1]
    live = np.flatnonzero(s.max(axis=1) >= thr)
    if live.size == 0:
        return
    sl, tl = s[live], thr[live]
    mask = sl >= tl[:, None]
    if sl.shape[1] > k and np.count_nonzero(mask) > 4 * k * live.size:
        kth = np.partition(sl, sl.shape[1] - k, axis=1)[:, sl.shape[1] - k]  # k-th largest per query
        mask = sl >= np.maximum(tl, kth)[:, None]
    r, c = np.nonzero(mask)
    _merge_sparse(top_ids, top_s, live[r], ib[c], sl[r, c].astype(np.float64))


def _merge_sparse(top_ids: np.ndarray, top_s: np.ndarray, rows: np.ndarray, ids: np.ndarray, vals: np.ndarray) -> None:
    """In place: per row, the top-k by (score desc, id asc) of the row's list and the new items."""
    k = top_ids.shape[1]
    touched = np.unique(rows)
    r_all = np.concatenate([np.repeat(touched, k), rows])
    i_all = np.concatenate([top_ids[touched].ravel(), ids])
    s_all = np.concatenate([top_s[touched].ravel(), vals])
    key = np.where(i_all < 0, _PAD_KEY, i_all)
    order = np.lexsort((key, -s_all, r_all))
    r_all, i_all, s_all = r_all[order], i_all[order], s_all[order]
    rank_in_row = np.arange(r_all.size) - np.searchsorted(r_all, r_all, side="left")
    keep = rank_in_row < k
    top_ids[r_all[keep], rank_in_row[keep]] = i_all[keep]
    top_s[r_all[keep], rank_in_row[keep]] = s_all[keep]


def search_exact(
    queries: np.ndarray, corpus: Any, k: int, ids: Any = None, block_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product over ``corpus`` (array, or iterable of ``(ids, vectors)``
    blocks), streamed with bounded memory. Returns ``(ids (n_q, k) int64, scores float64)``."""
    return stream_topk(queries, corpus, k, ids=ids, normalize=False, block_size=block_size)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float64 (zero rows stay zero, as torch's ``normalize`` does)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def check_finite(x: np.ndarray, name: str, offset: int = 0) -> None:
    if x.size and not np.all(np.isfinite(x)):
        row = int(np.flatnonzero(~np.all(np.isfinite(x.reshape(x.shape[0], -1)), axis=1))[0])
        raise ValueError(f"{name} contains non-finite values (first bad row {row + offset})")


# -- metrics -------------------------------------------------------------------------------------


def _relevance(ranked_ids: np.ndarray, answers: Answers) -> np.ndarray:
    """Grade of each ranked id for its query (0 when not an answer / padding)."""
    nq, k = ranked_ids.shape
    rel = np.zeros((nq, k))
    if answers.ids.size == 0 or ranked_ids.size == 0:
        return rel
    valid = ranked_ids >= 0
    uniq = np.unique(np.concatenate([answers.ids, ranked_ids[valid]]))
    m = np.int64(uniq.size + 1)
    akey = answers.row_index() * m + np.searchsorted(uniq, answers.ids)  # ascending (canonical CSR)
    rows = np.broadcast_to(np.arange(nq, dtype=np.int64)[:, None], (nq, k))
    rkey = rows[valid] * m + np.searchsorted(uniq, ranked_ids[valid])
    pos = np.minimum(np.searchsorted(akey, rkey), akey.size - 1)
    hit = akey[pos] == rkey
    vals = np.where(hit, answers.all_grades()[pos], 0.0)
    rel[valid] = vals
    return rel


def _ideal_dcg(answers: Answers, k: int) -> np.ndarray:
    n = len(answers)
    g = answers.all_grades()
    row = answers.row_index()
    order = np.lexsort((-g, row))
    pos = np.arange(g.size) - answers.indptr[row[order]]
    keep = pos < k
    return np.bincount(row[order][keep], weights=g[order][keep] / np.log2(pos[keep] + 2.0), minlength=n)


def metric_per_query(ranked_ids: np.ndarray, answers: Any, spec: str) -> np.ndarray:
    """Per-query values of one metric (NaN for queries without answers)."""
    name, k = parse_metric(spec)
    answers = as_answers(answers)
    ranked_ids = np.asarray(ranked_ids, dtype=np.int64)
    if ranked_ids.ndim != 2 or ranked_ids.shape[0] != len(answers):
        raise ValueError(f"ranked_ids must be (n_queries={len(answers)}, k), got shape {ranked_ids.shape}")
    top = ranked_ids[:, :k]
    rel = _relevance(top, answers)
    n_ans = answers.lengths()
    idcg = _ideal_dcg(answers, k) if name == "ndcg" else None
    return np.where(n_ans > 0, metric_from_relevance(rel, n_ans, idcg, name, k), np.nan)


def metric_from_relevance(rel: np.ndarray, n_answers: np.ndarray, idcg: np.ndarray | None, name: str,
                          k: int) -> np.ndarray:
    """Per-query value of metric ``name@k`` from the grades of the ranked results ``rel``
    (queries x ranks, 0 for a non-answer or padding), the queries' answer counts and, for ndcg,
    their ideal DCG. The one definition shared by evaluation and the γ search."""
    rel = rel[:, :k]
    if name == "recall":
        return (rel > 0).sum(axis=1) / np.maximum(np.minimum(n_answers, k), 1)
    if name == "hit":
        return (rel > 0).any(axis=1).astype(np.float64)
    if name == "mrr":
        hit = rel > 0
        first = np.argmax(hit, axis=1)
        return np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)
    disc = 1.0 / np.log2(np.arange(rel.shape[1]) + 2.0)
    dcg = rel @ disc
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def evaluate_per_query(ranked_ids: np.ndarray, answers: Any, metrics: str | Sequence[str]) -> dict[str, np.ndarray]:
    if isinstance(metrics, str):
        metrics = [metrics]
    answers = as_answers(answers)
    return {m: metric_per_query(ranked_ids, answers, m) for m in metrics}


def evaluate(ranked_ids: np.ndarray, answers: Any, metrics: str | Iterable[str]) -> dict[str, float]:
    """Mean of each metric over the queries that have answers (NaN if none has)."""
    if isinstance(metrics, str):
        metrics = [metrics]
    out = {}
    for m, v in evaluate_per_query(ranked_ids, answers, list(metrics)).items():
        ok = ~np.isnan(v)
        out[m] = float(v[ok].mean()) if ok.any() else float("nan")
    return out
