"""The candidate table of a γ search (internal): the moving records' curve parameters against
every validation query, pruned to the (query, record) pairs that can reach a query's top K.

See :mod:`nudge_sync.core.gamma` for the curves, the pruning argument and the tie rule; the table
(:class:`nudge_sync.core.gamma.Candidates`) is what every metric of the search is computed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .answers import Answers
from .gamma import CHUNK_ELEMS, Candidates


# -- building the candidate table ----------------------------------------------------------------


@dataclass
class Movers:
    """The records that can move (rows aligned). ``v`` / ``w`` may be larger arrays shared with
    the estimator and selected by ``rows`` (no copy of the d-dimensional data)."""

    ids: np.ndarray  # int64 global ids
    v: np.ndarray  # (·, d) unit records, working dtype
    w: np.ndarray  # (·, d): Ĝ, the unit direction of G
    cos_theta: np.ndarray  # float64 (N: cos angle(v, Ĝ); M: unused)
    sin_theta: np.ndarray
    jump: np.ndarray  # bool: N skip-rule records (ρ < 0)
    rows: np.ndarray | None = None  # rows of v / w to use (None: all, in order)

    def block(self, sl: slice) -> tuple[np.ndarray, np.ndarray]:
        if self.rows is None:
            return self.v[sl], self.w[sl]
        r = self.rows[sl]
        return self.v[r], self.w[r]


def _answer_positions(keys: np.ndarray, answer_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (row, id-rank) keys: is it an answer of that row, and its position in the answers
    (whose keys are sorted: canonical CSR rows are sorted by id)."""
    if keys.size == 0 or answer_keys.size == 0:
        return np.zeros(keys.size, dtype=bool), np.zeros(keys.size, dtype=np.int64)
    p = np.minimum(np.searchsorted(answer_keys, keys), answer_keys.size - 1)
    return answer_keys[p] == keys, p


#: NUDGE-M pruning splits [0, Γ] into this many pieces (lines are bounded piece by piece).
M_PRUNE_SEGMENTS = 8


def _n_b(a, c, cos_t, sin_t):
    """b = q·u from a = q·v and c = q·Ĝ, since Ĝ = cos θ v + sin θ u. Its error grows like
    1/sin θ but enters scores multiplied by sin φ <= sin θ (φ < θ before saturation)."""
    return (c - a * cos_t) / sin_t


#: NUDGE-N pruning splits [0, t_hi] (in φ) into this many pieces: a record stays in the table
#: only if it can reach its query's top K in some piece. One wide piece keeps far more: over it
#: every curve's minimum is low, so the K-th largest minimum is a weak threshold (on the dense
#: 200,000-record shape the whole range kept 17.4 million (query, record) pairs, four pieces 0.5
#: million).
N_PRUNE_SEGMENTS = 4


def _n_piece_bounds(A, C, cos_t, sin_t, theta, jump, edges, margin=0.0):
    """NUDGE-N: per piece [e_s, e_s+1] of the range, (max, min) bounds of every score curve;
    shapes (S, *A.shape). Works on a dense (queries x block) block, the per-record arrays shaped
    to broadcast as rows, and on gathered entries alike, in the arrays' precision.

    A curve R cos(φ - ψ) (a = q·v, c = q·Ĝ, b = q·u) strays at most R (1 - cos(w/2)) beyond the
    larger / smaller of its values at the ends of a piece of width w: the values at the ends
    (the saturated score c from θ on) and the amplitude bound it, with no arctan per entry.
    Skip-rule records score a before θ and c from θ on: a piece has a if it starts before θ, c if
    it ends at or after θ. ``margin`` (relative) widens every bound, for the working precision's
    rounding (of the scores, and of θ at a piece's end)."""
    dt = A.dtype.type
    b = (C - A * cos_t) / sin_t
    R = np.sqrt(A * A + b * b)
    S = edges.size - 1
    hi = np.empty((S,) + A.shape, dtype=A.dtype)
    lo = np.empty((S,) + A.shape, dtype=A.dtype)
    prev = None
    for s, e in enumerate(edges):
        end = np.where(theta <= e, C, A * dt(np.cos(e)) + b * dt(np.sin(e)))
        if prev is not None:
            # |value| <= R, so margin * (1 + R) covers the rounding of every value
            ex = R * dt(1.0 - np.cos((e - edges[s - 1]) / 2.0) + margin) + dt(margin)
            np.add(np.maximum(prev, end), ex, out=hi[s - 1])
            np.subtract(np.minimum(prev, end), ex, out=lo[s - 1])
        prev = end
    if np.any(jump):
        eps = 10 * margin + 1e-12
        lo_e, hi_e = edges[:-1, None] - eps, edges[1:, None] + eps
        if A.ndim == 2:
            lo_e, hi_e, theta = lo_e[:, None], hi_e[:, None], theta[None]
        before, after = theta > lo_e, theta <= hi_e
        pad = dt(margin) * (1 + np.maximum(np.abs(A), np.abs(C)))
        jh = np.maximum(np.where(before, A[None], -np.inf), np.where(after, C[None], -np.inf)) + pad
        jl = np.minimum(np.where(before, A[None], np.inf), np.where(after, C[None], np.inf)) - pad
        hi = np.where(jump, jh, hi)
        lo = np.where(jump, jl, lo)
    return hi, lo


#: Above this share of a block's entries passing the cheap test, NUDGE-N bounds the whole block
#: densely in the working precision (cheaper than gathering most of it into float64).
DENSE_SHARE = 0.3


def _m_bounds(a, b, edges):
    """NUDGE-M: per piece [g_s, g_s+1], (max, min) of the line a + γ·b; shape (S, n)."""
    e = a[None, :] + edges[:, None] * b[None, :]
    return np.maximum(e[:-1], e[1:]), np.minimum(e[:-1], e[1:])


def _margin(t: np.ndarray, rel: float, dtype) -> np.ndarray:
    """Thresholds lowered by a relative margin, as a column in the working precision: dense
    tests in float32 must not drop an entry that the exact float64 test would keep."""
    return (t - rel * (1.0 + np.abs(t))).astype(dtype)[:, None]


def _merge_top(top: np.ndarray, rows: np.ndarray, vals: np.ndarray, cols: np.ndarray | None = None,
               width: int = 0) -> np.ndarray:
    """Per row, the K largest of ``top[row]`` and the sparse (row, val) items. Many items (they
    come from a dense block: ``cols`` < ``width``) are merged by a row-wise partition of the
    block instead of a sort of the items."""
    if rows.size == 0:
        return top
    n, K = top.shape
    if cols is not None and rows.size > 4 * n * K:
        dense = np.full((n, K + width), -np.inf)
        dense[:, :K] = top
        dense[rows, K + cols] = vals
        return np.partition(dense, width, axis=1)[:, width:]
    touched = np.unique(rows)
    r_all = np.concatenate([np.repeat(touched, K), rows])
    v_all = np.concatenate([top[touched].ravel(), vals])
    order = np.lexsort((-v_all, r_all))
    r_all, v_all = r_all[order], v_all[order]
    start = np.searchsorted(r_all, r_all, side="left")
    rank = np.arange(r_all.size) - start
    keep = rank < K
    out = top.copy()
    out[r_all[keep], rank[keep]] = v_all[keep]
    return out


def build_candidates(
    family: str,
    qv: np.ndarray,
    movers: Movers,
    const_ids: np.ndarray,
    const_scores: np.ndarray,
    answers: Answers,
    k: int,
    t_hi: float,
    skip_pruning: bool = False,
    on_block=None,
) -> Candidates:
    """Candidate table for the range t in [0, t_hi] (φ for N, γ for M), for top-``k`` metrics.

    Pruning (see the module doc) runs per block of moving records on the dense (n_val x block)
    score matrices: a cheap necessary test (N: the curve's amplitude reaches the lowest piece
    threshold; M: a piece's end reaches its threshold) selects the entries whose bounds per piece
    are computed, in float64 when few pass, in the working precision over the whole block (widened
    by a margin) when most do (dense labels). The thresholds only grow, block after block, and the
    entries kept are filtered once more by the final ones. ``on_block(r0, sl, A, Bm)`` is called
    with every block's products (movers ``sl``, working precision).
    """
    n_val = qv.shape[0]
    m = movers.ids.size
    k = int(k)
    wdt = qv.dtype
    margin_rel = 1e-5 if wdt == np.float32 else 1e-12  # dense tests in the working precision
    n_seg = (N_PRUNE_SEGMENTS if family == "n" else M_PRUNE_SEGMENTS) if t_hi > 0 else 1
    edges = np.linspace(0.0, t_hi, n_seg + 1)
    if family == "n":
        theta_m = np.arccos(np.clip(movers.cos_theta, -1.0, 1.0))
        sin_m = np.where(movers.sin_theta > 0, movers.sin_theta, 1.0)
    # Running K-th largest "guaranteed" score per query and piece: constants and movers' minima.
    top = np.full((n_seg, n_val, k), -np.inf)
    kc = min(k, const_scores.shape[1])
    top[:, :, :kc] = const_scores[None, :, :kc]

    def bounds(a, b, idx):
        """Exact-precision bounds of gathered entries (movers ``idx``): (S, n) max and min."""
        if family == "n":
            return _n_piece_bounds(a, b, movers.cos_theta[idx], sin_m[idx], theta_m[idx], movers.jump[idx], edges)
        return _m_bounds(a, b, edges)

    kept: list[tuple[np.ndarray, ...]] = []  # (row, mover, a, b, max per piece (S, n))
    block = max(1, CHUNK_ELEMS // max(1, n_val))
    for r0 in range(0, m, block):
        sl = slice(r0, min(m, r0 + block))
        vb, wb = movers.block(sl)
        A = qv @ vb.T  # working precision; exact bounds below are in float64
        Bm = qv @ wb.T
        del vb, wb
        if on_block is not None:  # another table built from the same products (steps.StepTable)
            on_block(r0, sl, A, Bm)
        if skip_pruning:
            jj, ii = np.nonzero(np.ones(A.shape, dtype=bool))
            a, b = A[jj, ii].astype(np.float64), Bm[jj, ii].astype(np.float64)
            kept.append((jj, ii + r0, a, b, bounds(a, b, ii + r0)[0]))
            continue
        # A cheap dense test in the working precision (with a margin) selects the entries that may
        # raise a piece's threshold or be kept in some piece: N: only if the amplitude (a bound of
        # every value of the curve) reaches the lowest of the pieces' thresholds; M: only if a
        # piece's end reaches that piece's threshold (lines). Thresholds only grow, so testing
        # before this block raises them selects a superset.
        t_low = _margin(top.min(axis=2).min(axis=0), margin_rel, wdt)
        if family == "n":
            cos_w, sin_w, th_w = (x[sl].astype(wdt) for x in (movers.cos_theta, sin_m, theta_m))
            Bu = (Bm - A * cos_w) / sin_w  # q·u
            amp = A * A + Bu * Bu
            jump = movers.jump[sl]
            if jump.any():
                amp = np.where(jump, np.maximum(A * A, Bm * Bm), amp)
            selected = (t_low < 0) | (amp >= t_low * t_low)
            del Bu, amp
            if np.count_nonzero(selected) > DENSE_SHARE * selected.size:
                # most entries pass (dense labels): bound the whole block in the working precision,
                # widened by the margin, rather than gathering most of it into float64
                hi_d, lo_d = _n_piece_bounds(A, Bm, cos_w, sin_w, th_w, jump, edges.astype(wdt), margin_rel)
                w = A.shape[1]
                for sgi in range(n_seg):  # this block's K largest minima per query, merged
                    best = lo_d[sgi] if w <= k else np.partition(lo_d[sgi], w - k, axis=1)[:, w - k :]
                    both = np.concatenate([top[sgi], best.astype(np.float64)], axis=1)
                    top[sgi] = np.partition(both, both.shape[1] - k, axis=1)[:, both.shape[1] - k :]
                thr = top.min(axis=2).astype(wdt)[:, :, None]
                jj, ii = np.nonzero(np.any(hi_d >= thr, axis=0))
                a, b = A[jj, ii].astype(np.float64), Bm[jj, ii].astype(np.float64)
                kept.append((jj, ii + r0, a, b, hi_d[:, jj, ii].astype(np.float64)))
                continue
        else:
            selected = np.zeros(A.shape, dtype=bool)
            e0 = A
            for sgi in range(n_seg):
                e1 = A + wdt.type(edges[sgi + 1]) * Bm
                t = _margin(top[sgi].min(axis=1), margin_rel, wdt)
                selected |= (np.minimum(e0, e1) > t) | (np.maximum(e0, e1) >= t)
                e0 = e1
        jj, ii = np.nonzero(selected)
        a, b = A[jj, ii].astype(np.float64), Bm[jj, ii].astype(np.float64)
        hi, lo = bounds(a, b, ii + r0)
        for sgi in range(n_seg):  # raise the thresholds with this block's exact minima
            up = lo[sgi] > top[sgi].min(axis=1)[jj]
            top[sgi] = _merge_top(top[sgi], jj[up], lo[sgi][up], ii[up], A.shape[1])
        ok = np.any(hi >= top.min(axis=2)[:, jj], axis=0)
        kept.append((jj[ok], ii[ok] + r0, a[ok], b[ok], hi[:, ok]))
    if kept:
        j = np.concatenate([x[0] for x in kept])
        i = np.concatenate([x[1] for x in kept])
        a = np.concatenate([x[2] for x in kept])
        b = np.concatenate([x[3] for x in kept])
        if not skip_pruning:  # the final thresholds are the tightest
            hi = np.concatenate([x[4] for x in kept], axis=1)
            ok = np.any(hi >= top.min(axis=2)[:, j], axis=0)
            j, i, a, b = j[ok], i[ok], a[ok], b[ok]
    else:
        j = i = np.zeros(0, dtype=np.int64)
        a = b = np.zeros(0)
    return assemble(family, n_val, movers, j, i, a, b, const_ids, const_scores, answers, t_hi)


def assemble(family: str, n_val: int, movers: Movers, j: np.ndarray, i: np.ndarray, a: np.ndarray, b: np.ndarray,
             const_ids: np.ndarray, const_scores: np.ndarray, answers: Answers, t_hi: float) -> Candidates:
    """The table from the kept (query ``j``, mover ``i``) entries with their a = q·v, b = q·Ĝ
    (float64, in query order) and the constants."""
    # Constants (non-padding) become elements too.
    cj, cc = np.nonzero(const_ids >= 0)
    c_ids = const_ids[cj, cc]
    c_s = const_scores[cj, cc]
    rows = np.concatenate([j, cj])
    ids_all = np.concatenate([movers.ids[i], c_ids])
    # rows in id order: a row's positions then break score ties the way ids do (score desc, id
    # asc). One int64 key per element, (row, rank of its id), sorted by a stable sort: the blocks
    # above are already in row order, so it merges runs.
    uniq = np.unique(np.concatenate([movers.ids, c_ids, answers.ids]))
    rank_m = np.searchsorted(uniq, movers.ids)
    rank = np.concatenate([rank_m[i], np.searchsorted(uniq, c_ids)])
    n_rank = np.int64(uniq.size + 1)
    key = rows * n_rank + rank
    order = np.argsort(key, kind="stable")
    key = key[order]
    el_row = rows[order]
    el_id = ids_all[order]
    alpha = np.concatenate([a, c_s])[order]
    if family == "n":
        is_c = np.concatenate([np.zeros(j.size, bool), np.ones(cj.size, bool)])[order]
        jump = np.concatenate([movers.jump[i], np.zeros(cj.size, bool)])[order]
        cos_m = np.concatenate([movers.cos_theta[i], np.ones(cj.size)])[order]
        sin_m = np.concatenate([movers.sin_theta[i], np.ones(cj.size)])[order]
        c_raw = np.concatenate([b, np.zeros(cj.size)])[order]  # q·Ĝ (kept "b" is c for N)
        beta_raw = np.where(is_c, 0.0, _n_b(alpha, c_raw, cos_m, sin_m))
        kappa = np.where(is_c, alpha, c_raw)  # saturated score: exactly q·Ĝ
        flat = is_c | jump  # constant before saturation: the value is carried by δ
        delta = np.where(flat, alpha, 0.0)
        beta = np.where(flat, 0.0, beta_raw)
        alpha = np.where(flat, 0.0, alpha)
        cos_t = np.where(is_c, 2.0, cos_m)
        theta = np.where(is_c, 0.0, np.arccos(np.clip(cos_m, -1.0, 1.0)))
    else:
        jump = np.zeros(el_row.size, dtype=bool)
        beta = np.concatenate([b, np.zeros(cj.size)])[order]
        cos_t = np.full(el_row.size, 2.0)
        theta = np.zeros(el_row.size)
        kappa = alpha
        delta = np.zeros(el_row.size)
    row_ptr = np.zeros(n_val + 1, dtype=np.int64)
    np.cumsum(np.bincount(el_row, minlength=n_val), out=row_ptr[1:])
    found, pos = _answer_positions(key, answers.row_index() * n_rank + np.searchsorted(uniq, answers.ids))
    grades = np.where(found, answers.all_grades()[pos], 0.0)
    pair_el = np.flatnonzero(found)
    return Candidates(
        family=family, n_val=n_val, row_ptr=row_ptr, el_row=el_row, el_id=el_id, alpha=alpha,
        beta=beta, cos_theta=cos_t, theta=theta, kappa=kappa, delta=delta, jump=jump, el_ans=found,
        el_grade=grades, pair_el=pair_el, pair_row=el_row[pair_el], n_answers=answers.lengths(),
        answers=answers, t_hi=float(t_hi),
    )
