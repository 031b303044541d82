"""Bounds of the validation objective over a cell of the γ range, query by query (internal;
the refinement step of :func:`nudge_sync.core.curve.exact_curve`).

An *item* is one validation query on one cell [t0, t1] of the range (φ for NUDGE-N, γ for
NUDGE-M) with the candidate elements that may still matter there. For every item:

1. every element's score range [lo, hi] over the cell is closed-form (:func:`element_bounds`);
2. thr = the k-th largest lo: an element with hi < thr has k elements strictly above it all over
   the cell, never reaches the top k, and is dropped (this keeps every metric with cut-off k
   exact, as in ``build_candidates``);
3. each answer's rank lies between the number of elements certainly above it (lo_e > hi_a, or
   equal with a smaller id) and the number possibly above it (hi_e > lo_a, or equal with a
   smaller id); elements with exactly the same score curve ("twins": copies of one record, equal
   constants) never change order, whatever their ranges, and are counted by id;
4. hence UB >= the query's value >= LB everywhere in the cell; UB == LB means it is constant there.
"""

from __future__ import annotations

import numpy as np

from .metrics import _ideal_dcg
from .ragged import RaggedGroups


def answer_weights(C, name: str, k: int) -> np.ndarray | None:
    """Per element of a candidate table: its share of its query's ndcg (grade / ideal DCG) or
    recall (1 / min(answers, k)) at rank 0, 0 for non-answers; None for hit / mrr."""
    if name == "ndcg":
        idcg = _ideal_dcg(C.answers, k)
        return C.el_grade / np.where(idcg > 0, idcg, 1.0)[C.el_row]
    if name == "recall":
        return np.where(C.el_ans, 1.0 / np.maximum(np.minimum(C.n_answers, k), 1)[C.el_row], 0.0)
    return None

#: UB - LB below this: the item's value is constant over its cell.
SETTLE_TOL = 1e-13


class Items:
    """Items of one depth: query row, dyadic cell (index at this depth, and its ends), and the
    elements of each (CSR into positions of the candidate table), with their score ranges over
    the cell once known."""

    def __init__(self, row, cell, t0, t1, ptr, el, lo=None, hi=None):
        self.row, self.cell, self.t0, self.t1, self.ptr, self.el = row, cell, t0, t1, ptr, el
        self.lo, self.hi = lo, hi

    def __len__(self) -> int:
        return int(self.row.size)

    @property
    def owner(self) -> np.ndarray:
        return np.repeat(np.arange(self.row.size), np.diff(self.ptr))

    def slice(self, a: int, b: int) -> Items:
        """Items a..b-1, with their elements (contiguous in the flat arrays)."""
        p0, p1 = int(self.ptr[a]), int(self.ptr[b])
        ranges = (self.lo[p0:p1], self.hi[p0:p1]) if self.lo is not None else (None, None)
        return Items(self.row[a:b], self.cell[a:b], self.t0[a:b], self.t1[a:b], self.ptr[a : b + 1] - p0,
                     self.el[p0:p1], *ranges)

    def batches(self, max_elements: int) -> list[tuple[int, int]]:
        """Consecutive item ranges of at most ``max_elements`` elements each (one item at least),
        to bound the working memory of one step."""
        out, a, n = [], 0, len(self)
        while a < n:
            b = int(np.searchsorted(self.ptr, self.ptr[a] + max_elements, side="right")) - 1
            b = min(n, max(b, a + 1))
            out.append((a, b))
            a = b
        return out

    def subset(self, keep: np.ndarray, which: np.ndarray, with_ranges: bool = False) -> Items:
        """Items ``which`` with only their elements ``keep`` (and their score ranges)."""
        owner = self.owner
        take = keep & which[owner]
        sizes = np.bincount(owner[take], minlength=len(self))[which]
        ptr = np.zeros(sizes.size + 1, dtype=np.int64)
        np.cumsum(sizes, out=ptr[1:])
        lo = self.lo[take] if with_ranges else None
        hi = self.hi[take] if with_ranges else None
        return Items(self.row[which], self.cell[which], self.t0[which], self.t1[which], ptr, self.el[take], lo, hi)

    def halves(self) -> Items:
        """Both halves of every item, each with all of the item's elements."""
        mid = (self.t0 + self.t1) / 2.0
        sizes = np.repeat(np.diff(self.ptr), 2)
        ptr = np.zeros(sizes.size + 1, dtype=np.int64)
        np.cumsum(sizes, out=ptr[1:])
        src = np.repeat(np.repeat(self.ptr[:-1], 2) - ptr[:-1], sizes) + np.arange(ptr[-1])
        cell = np.stack([2 * self.cell, 2 * self.cell + 1], axis=1).ravel()
        t0 = np.stack([self.t0, mid], axis=1).ravel()
        t1 = np.stack([mid, self.t1], axis=1).ravel()
        return Items(np.repeat(self.row, 2), cell, t0, t1, ptr, self.el[src])


class QueryMetric:
    """The objective metric ``name@k`` per validation query of a candidate table: answer counts,
    ideal DCG, pair weights and twin counts."""

    def __init__(self, C, name: str, k: int):
        self.C, self.name, self.k = C, name, int(k)
        self.prime = name in ("hit", "mrr")  # depends on the first answer's position only
        self.el_weight = answer_weights(C, name, self.k)
        # hit/mrr rank an answer among non-answers only; recall/ndcg among all elements
        # twin counts only tighten the bounds (zero is valid): they are counted once the first
        # depth has cut the table down to the elements that matter (count_twins)
        self.twins_before = np.zeros(C.el_id.size, dtype=np.int64)
        self.twins_after = np.zeros(C.el_id.size, dtype=np.int64)

    def count_twins(self, el: np.ndarray) -> None:
        """Twin counts of the elements ``el`` (a set closed under twins: twins have the same
        score ranges, so a pruning keeps both or neither)."""
        el = np.unique(el)
        C = self.C
        counted = ~C.el_ans[el] if self.prime else np.ones(el.size, dtype=bool)
        self.twins_before[el], self.twins_after[el] = twin_counts(C, counted, el)

    def gain(self, rank: np.ndarray) -> np.ndarray:
        """recall / ndcg: a pair's contribution factor at a (0-based) rank."""
        r = rank.astype(np.float64)
        if self.name == "recall":
            return (r < self.k).astype(np.float64)
        return np.where(r < self.k, 1.0 / np.log2(r + 2.0), 0.0)

    def first(self, rank: np.ndarray) -> np.ndarray:
        """hit / mrr: the query's value when its first answer sits at ``rank``."""
        r = rank.astype(np.float64)
        if self.name == "hit":
            return (r < self.k).astype(np.float64)
        return np.where(r < self.k, 1.0 / (r + 1.0), 0.0)


def element_bounds(C, idx: np.ndarray, t0: np.ndarray, t1: np.ndarray, trig=None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): min and max of each element's score over its cell [t0, t1] (arrays aligned with
    ``idx``; ``trig`` = (cos t0, sin t0, cos t1, sin t1) aligned too, computed if None).
    NUDGE-N: α cos t + β sin t + δ before the saturation angle θ, κ from θ on (the boundary side
    is included either way: bounds only need to be valid); NUDGE-M: lines."""
    if C.family == "m":
        a, b = C.alpha[idx], C.beta[idx]
        e0, e1 = a + t0 * b, a + t1 * b
        return np.minimum(e0, e1), np.maximum(e0, e1)
    c0, s0, c1, s1 = trig if trig is not None else (np.cos(t0), np.sin(t0), np.cos(t1), np.sin(t1))
    sh = C.shape()
    a, b, d, th = C.alpha[idx], C.beta[idx], C.delta[idx], C.theta[idx]
    eps = 1e-12
    moving = t0 < th + eps  # part of the cell before saturation
    inside = th < t1  # saturates inside the cell: the moving part ends at θ
    f0 = a * c0 + b * s0 + d
    fm = np.where(inside, sh["before_sat"][idx], a * c1 + b * s1 + d)
    tm = np.where(inside, th, t1)
    lo = np.where(moving, np.minimum(f0, fm), np.inf)
    hi = np.where(moving, np.maximum(f0, fm), -np.inf)
    psi, psi_min = sh["psi"][idx], sh["psi_min"][idx]
    hi = np.where(moving & (psi > t0) & (psi < tm), sh["R"][idx] + d, hi)
    lo = np.where(moving & (psi_min > t0) & (psi_min < tm), d - sh["R"][idx], lo)
    sat = t1 >= th - eps  # part of the cell at or after saturation
    kap = C.kappa[idx]
    lo = np.where(sat, np.minimum(lo, kap), lo)
    hi = np.where(sat, np.maximum(hi, kap), hi)
    return lo, hi


def twin_counts(C, counted: np.ndarray, el: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per element of ``el`` (sorted table positions): how many ``counted`` elements of ``el`` in
    its row have exactly the same score curve and a smaller (before) or larger (after) id.
    Candidates share one hash of the row and the curve's parameters (twins are rare: copies of
    one record, equal constants), then are checked parameter by parameter."""
    keys = tuple(x[el] for x in (C.el_row.astype(np.float64), C.alpha, C.beta, C.delta, C.kappa, C.theta,
                                 C.jump.astype(np.float64)))
    h = np.zeros(el.size, dtype=np.uint64)
    for key in keys:
        h = (h * np.uint64(1_000_003)) ^ np.ascontiguousarray(key, dtype=np.float64).view(np.uint64)
    order = np.argsort(h, kind="stable")  # equal hashes keep the table order: by id within a row
    hs = h[order]
    cand = np.flatnonzero(hs[1:] == hs[:-1])
    out_b = np.zeros(order.size, dtype=np.int64)
    out_a = np.zeros(order.size, dtype=np.int64)
    if cand.size == 0:
        return out_b, out_a
    same = np.zeros(order.size - 1, dtype=bool)
    same[cand] = True
    for key in keys:  # a hash collision is not a twin
        same[cand] &= key[order[cand + 1]] == key[order[cand]]
    new = np.ones(order.size, dtype=bool)
    new[1:] = ~same
    group = np.cumsum(new) - 1
    cnt = counted[order].astype(np.int64)
    csum = np.cumsum(cnt)
    start = np.flatnonzero(new)
    before = csum - cnt - np.where(start > 0, csum[np.maximum(start - 1, 0)], 0)[group]
    after = np.bincount(group, weights=cnt, minlength=start.size).astype(np.int64)[group] - before - cnt
    out_b[order], out_a[order] = before, after
    return out_b, out_a


def _count_before(top_pos, vals, owner, x, x_pos):
    """Per pair p: how many entries of its item's top list (positions, -1 padding) come before
    (x, x_pos) in the order (value desc, position asc), p itself excluded; and whether every
    real entry of the list did (then the true count may be larger)."""
    t = top_pos[owner]
    v = np.where(t >= 0, vals[np.maximum(t, 0)], -np.inf)
    real = (t >= 0) & (t != x_pos[:, None])
    before = ((v > x[:, None]) | ((v == x[:, None]) & (t < x_pos[:, None]))) & real
    count = np.count_nonzero(before, axis=1)
    return count, count == np.count_nonzero(real, axis=1)


def rank_bounds(groups: RaggedGroups, items: Items, mask, owner, pairs, k, twins_before, twins_after):
    """(lower, upper) bound of each pair's rank among the elements ``mask`` of its item over the
    cell, both capped at k (module doc, step 3). Positions break ties: elements lie in id order."""
    lo, hi = items.lo, items.hi
    lo_m = np.where(mask, lo, -np.inf)
    hi_m = np.where(mask, hi, -np.inf)
    po = owner[pairs]
    c_lb, _ = _count_before(groups.top_positions(lo_m, k), lo_m, po, hi[pairs], pairs)
    top_hi = groups.top_positions(hi_m, k + 1)
    c_ub, all_before = _count_before(top_hi, hi_m, po, lo[pairs], pairs)
    # twins constant on the cell are already ordered by id in the counts above
    moving = hi[pairs] > lo[pairs]
    r_lb = np.minimum(c_lb + np.where(moving, twins_before, 0), k)
    # the count is exact unless every listed entry came before (there may be more than listed)
    listed = np.count_nonzero(top_hi[po] >= 0, axis=1)
    exact = ~all_before | (listed < k + 1)
    r_ub = np.where(exact, np.maximum(c_ub - np.where(moving, twins_after, 0), 0), k)
    return r_lb, np.minimum(r_ub, k)


def _separable_upper(metric: QueryMetric, item: np.ndarray, w: np.ndarray, r_lb: np.ndarray, n: int) -> np.ndarray:
    """recall / ndcg: upper bound of Σ w_p gain(rank_p) over an item's answers p, given rank_p >=
    r_lb_p and distinct ranks. The j-th smallest rank (from 0) is at least j and at least the j-th
    smallest bound, and the largest weights at the best ranks give the largest sum
    (rearrangement), so Σ_j w_(j) gain(max(j, r_lb_(j))) bounds it; summing gain(r_lb_p) alone
    would let every answer sit at rank 0 (above 1 for a query with many answers)."""
    by_rank = np.lexsort((r_lb, item))
    by_weight = np.lexsort((-w, item))
    start = np.searchsorted(item[by_rank], np.arange(n))  # item's first slot (same in both orders)
    j = np.arange(item.size) - start[item[by_rank]]
    ranks = np.maximum(j, r_lb[by_rank])
    return np.bincount(item[by_rank], weights=w[by_weight] * metric.gain(ranks), minlength=n)


def bound_items(metric: QueryMetric, items: Items) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-4 of the module doc for every item. Sets ``items.lo / hi``; returns (ub, lb, keep
    (per element), expansion (per item: relevant answers x kept elements))."""
    C, k = metric.C, metric.k
    n = len(items)
    owner = items.owner
    el = items.el
    trig = None
    if C.family == "n":  # one cos / sin per item, not per element
        trig = (np.cos(items.t0)[owner], np.sin(items.t0)[owner], np.cos(items.t1)[owner], np.sin(items.t1)[owner])
    items.lo, items.hi = element_bounds(C, el, items.t0[owner], items.t1[owner], trig)
    groups = RaggedGroups(items.ptr)
    thr = groups.top_values(items.lo, k)[:, k - 1]
    keep = items.hi >= thr[owner]
    is_ans = C.el_ans[el]
    pairs = np.flatnonzero(is_ans & keep)
    po = owner[pairs]
    ep = el[pairs]
    competitors = keep & ~is_ans if metric.prime else keep
    r_lb, r_ub = rank_bounds(groups, items, competitors, owner, pairs, k, metric.twins_before[ep],
                             metric.twins_after[ep])
    if metric.prime:
        best_lb = np.full(n, k, dtype=np.int64)
        best_ub = np.full(n, k, dtype=np.int64)
        np.minimum.at(best_lb, po, r_lb)
        np.minimum.at(best_ub, po, r_ub)
        ub, lb = metric.first(best_lb), metric.first(best_ub)
    else:
        w = metric.el_weight[ep]
        ub = _separable_upper(metric, po, w, r_lb, n)
        lb = np.bincount(po, weights=w * metric.gain(r_ub), minlength=n)
    n_kept = np.bincount(owner, weights=keep, minlength=n)
    expansion = np.bincount(po, minlength=n) * n_kept
    return ub, lb, keep, expansion


def restrict(C, groups: RaggedGroups, k: int, t0: float, t1: float):
    """The candidate table of the cell [t0, t1]: only the elements that can reach their query's
    top k somewhere in it (step 2 of the module doc). ``groups``: the layout of C's rows."""
    n = C.el_id.size
    lo, hi = element_bounds(C, np.arange(n), np.full(n, float(t0)), np.full(n, float(t1)))
    thr = groups.top_values(lo, k)[:, k - 1]
    return C.subset(hi >= thr[C.el_row])
