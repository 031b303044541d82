"""Exact pieces of small items (internal; the leaves of :func:`nudge_sync.core.curve.exact_curve`).

Inside an item's cell a query's value can only change where one of its answers crosses another
element's score curve, or at a saturation angle. For a small item (few answers x few elements)
these points are computed in closed form, and the value is evaluated directly in the middle of
each piece between them: ranked with the shared tie rule (score desc, id asc), so the result is
robust to rounding and to exact ties. Points closer than ``tol`` are merged: crossings that
coincide mathematically come out a few ulps apart, and the sliver between them has no value that
a representable γ reliably reproduces.
"""

from __future__ import annotations

import numpy as np

from .answer_ranks import answer_ranks, locate, metric_from_ranks
from .cells import Items, QueryMetric
from .ragged import RaggedGroups

#: (piece, element) entries ranked per batch, to bound memory.
_PIECE_BATCH = 1 << 21


def _roots_sinusoid(A, B, Cc, lo, hi):
    """Roots of A cos t + B sin t + C = 0 with lo < t < hi (two candidates, NaN when absent)."""
    R = np.hypot(A, B)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = -Cc / R
    ok = (R > 0) & (np.abs(x) <= 1.0)
    psi = np.arctan2(B, A)
    d = np.arccos(np.clip(x, -1.0, 1.0))
    out = []
    for t in (psi + d, psi - d):
        t = np.mod(t, 2 * np.pi)
        good = ok & (t > lo) & (t < hi)
        out.append(np.where(good, t, np.nan))
    return out


def crossings(C, ea: np.ndarray, ee: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every t in the open window (w0, w1) (per pair) where element ``ea`` and element ``ee`` may
    change order: (index of the pair, t). Saturation angles inside the window are included: the
    jump of a skip-rule record is a discontinuity, and a crossing can sit exactly on a piece
    boundary (two records with the same Ĝ meet at the later saturation and tie from there on),
    where the open-interval root search misses it."""
    owner = np.arange(ea.size)
    if C.family == "m":
        da = C.alpha[ea] - C.alpha[ee]
        db = C.beta[ea] - C.beta[ee]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(db != 0, -da / db, np.nan)
        ok = (t > w0) & (t < w1)
        return owner[ok], t[ok]
    th_a, th_e = C.theta[ea], C.theta[ee]
    c1 = np.clip(np.minimum(th_a, th_e), w0, w1)
    c2 = np.clip(np.maximum(th_a, th_e), w0, w1)
    # the window's pieces between the two saturation angles; only non-empty ones are solved
    p_lo = np.concatenate([w0, c1, c2])
    p_hi = np.concatenate([c1, c2, w1])
    p_own = np.concatenate([owner, owner, owner])
    ne = p_hi > p_lo
    p_lo, p_hi, p_own = p_lo[ne], p_hi[ne], p_own[ne]
    pa, pe = ea[p_own], ee[p_own]
    mid = (p_lo + p_hi) / 2.0
    mov_a = mid < C.theta[pa]
    mov_e = mid < C.theta[pe]
    A = np.where(mov_a, C.alpha[pa], 0.0) - np.where(mov_e, C.alpha[pe], 0.0)
    B = np.where(mov_a, C.beta[pa], 0.0) - np.where(mov_e, C.beta[pe], 0.0)
    Cc = np.where(mov_a, C.delta[pa], C.kappa[pa]) - np.where(mov_e, C.delta[pe], C.kappa[pe])
    live = (A != 0) | (B != 0)  # two constants never cross inside a piece
    owners, ts = [], []
    for r in _roots_sinusoid(A[live], B[live], Cc[live], p_lo[live], p_hi[live]):
        ok = ~np.isnan(r)
        owners.append(p_own[live][ok])
        ts.append(r[ok])
    for th in (th_a, th_e):
        ok = (th > w0) & (th < w1)
        owners.append(owner[ok])
        ts.append(th[ok])
    return np.concatenate(owners), np.concatenate(ts)


def _answer_pairs(C, leaves: Items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answer position, other position, item) for every answer and every other element of an
    item whose score ranges over the cell overlap (the others never change order with it)."""
    owner = leaves.owner
    ans_pos = np.flatnonzero(C.el_ans[leaves.el])
    sizes = np.diff(leaves.ptr)
    a_item = owner[ans_pos]
    reps = sizes[a_item]
    xa = np.repeat(ans_pos, reps)
    xi = np.repeat(a_item, reps)
    offs = np.zeros(reps.size, dtype=np.int64)
    np.cumsum(reps[:-1], out=offs[1:])
    xe = np.repeat(leaves.ptr[a_item], reps) + np.arange(xa.size) - np.repeat(offs, reps)
    lo, hi = leaves.lo, leaves.hi
    ok = (xe != xa) & (lo[xe] <= hi[xa]) & (lo[xa] <= hi[xe])
    return xa[ok], xe[ok], xi[ok]


def leaf_pieces(metric: QueryMetric, leaves: Items, tol: float) -> tuple[np.ndarray, ...]:
    """The exact pieces of every leaf item: (item, start, end, value) arrays; together they tile
    each item's cell (slivers shorter than ``tol`` merged into a neighbour)."""
    C = metric.C
    n = len(leaves)
    xa, xe, xi = _answer_pairs(C, leaves)
    which, t = crossings(C, leaves.el[xa], leaves.el[xe], leaves.t0[xi], leaves.t1[xi])
    b_item = np.concatenate([np.arange(n), xi[which], np.arange(n)])
    b_t = np.concatenate([leaves.t0, t, leaves.t1])
    order = np.lexsort((b_t, b_item))
    b_item, b_t = b_item[order], b_t[order]
    # points closer than tol form one cluster, represented by its first point (t0 for the first
    # cluster); the last cluster of an item is represented by the cell's end t1
    new = np.ones(b_t.size, dtype=bool)
    new[1:] = (b_item[1:] != b_item[:-1]) | (np.diff(b_t) > tol)
    rep_item, rep_t = b_item[new], b_t[new]
    last = np.ones(rep_item.size, dtype=bool)
    last[:-1] = rep_item[1:] != rep_item[:-1]
    rep_t = np.where(last, leaves.t1[rep_item], rep_t)
    s = np.flatnonzero(~last)  # piece from one representative to the next, same item
    p_item, p_t0, p_t1 = rep_item[s], rep_t[s], rep_t[s + 1]
    return p_item, p_t0, p_t1, _evaluate(metric, leaves, p_item, (p_t0 + p_t1) / 2.0)


def _evaluate(metric: QueryMetric, leaves: Items, p_item: np.ndarray, p_t: np.ndarray) -> np.ndarray:
    """The query value of item ``p_item`` at ``p_t``, for every piece (batched)."""
    C, k = metric.C, metric.k
    sizes = np.diff(leaves.ptr)[p_item]
    out = np.zeros(p_item.size)
    csum = np.cumsum(sizes)
    start = 0
    while start < p_item.size:
        base = csum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(csum, base + _PIECE_BATCH, side="right")))
        it, sz = p_item[start:stop], sizes[start:stop]
        ptr = np.zeros(it.size + 1, dtype=np.int64)
        np.cumsum(sz, out=ptr[1:])
        e = leaves.el[np.repeat(leaves.ptr[it] - ptr[:-1], sz) + np.arange(ptr[-1])]
        scores = C.values(e, C.point_of_t(np.repeat(p_t[start:stop], sz)))
        ans = np.flatnonzero(C.el_ans[e])
        group = np.repeat(np.arange(it.size), sz)[ans]
        layout = RaggedGroups(ptr)
        rank = answer_ranks(layout.padded(scores), locate(layout, ans), ans.size, k)
        w = None if metric.el_weight is None else metric.el_weight[e[ans]]
        out[start:stop] = metric_from_ranks(metric.name, k, rank, group, w, it.size)
        start = stop
    return out
