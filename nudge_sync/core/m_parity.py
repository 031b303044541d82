"""NUDGE-M parity: the reference's interval sweep, decision for decision (internal).

For a validation pair (q, a) and a competitor j, a is at least as good as j at γ iff
Δs <= γ·Δg, with Δs = s_j - s_a and Δg = c_a - c_j (s = q·v, c = q·Ĝ). nudge-ft 0.1.2 intersects
these half-lines into one interval per pair and returns the left end of the segment covered by
the most intervals. Where the answer is exact, so are we; but its decisions at ties come from
its arithmetic, so parity mode repeats that arithmetic in the inputs' precision (float32 for
float32 inputs, as torch computes):

* every ratio is ``Δs / (Δg + 1e-8)`` in that precision, with Δs and Δg the differences of
  entries of the same score matrices;
* ``low = max(0, max over Δg > 0 of the ratio)``, ``high = min over Δg < 0`` (1e8 when none);
  a pair is dropped when some Δg == 0 has Δs > 0, or when high < low (NaN: dropped too);
* the sweep sorts the lows and the highs separately, merges them with starts first at equal
  values, and after each group of equal values compares the running count with the best so far
  (strict >): the count at a value v is #{low <= v} - #{high <= v}, intervals are [low, high).

Ties decide: two answers of one query crossing give the same two matrix entries with opposite
signs, and whether ``Δg + 1e-8`` moves their endpoints apart depends on the precision (NUDGE.md
H3/H4); an exact copy of an answer (Δs = 0) with a larger slope gives the interval [0, 0], which
the sweep never counts (an earlier version of parity mode counted it at γ = 0 and so chose γ = 0
where nudge-ft chose 0.2589 on NFCorpus's out-of-distribution split). What remains is the float
noise of the matrix products themselves (a different BLAS): a tie that is not structural may
fall either way, as it would between two runs of the reference on different hardware.

Exact copies must also score exactly alike against every query, or their tie is lost. A float32
matrix product does not promise that (two equal columns of one OpenBLAS product came out an ulp
apart here); so parity mode forms every score as the float64 product of the float32 vectors,
rounded to float32: the same value for equal vectors wherever they sit (:func:`rounded_scores`,
:func:`rounded_topk`). A validation context supplied from outside keeps its own scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import normalize_rows, stream_topk

#: Work arrays (pairs x competitors) are kept under this many elements.
_CHUNK = 1 << 19
_EPS = 1e-8
_LARGE = 1.0 / _EPS


def m_parity_intervals(qv: np.ndarray, movers, pair_row: np.ndarray, pair_mover: np.ndarray, pair_s: np.ndarray,
                       pair_id: np.ndarray, best_const: np.ndarray) -> dict[str, np.ndarray]:
    """The reference's (low, high) of every validation pair it keeps, in the working precision.

    ``pair_mover``: index into ``movers`` of the pair's answer, or -1 when the answer does not
    move (its score is then ``pair_s`` and its slope 0). ``best_const``: per pair, the best score
    among the records that never move, the answer excluded (-inf if none): since they all have
    slope 0, the most binding of them is the highest (the ratio is monotone in Δs).
    """
    dt = qv.dtype.type
    P = pair_row.size
    m = movers.ids.size
    eps, large = dt(_EPS), dt(_LARGE)
    s_a = pair_s.astype(dt)
    c_a = np.zeros(P, dtype=dt)
    block = max(1, _CHUNK // max(P, qv.shape[0], 1))
    q64 = qv.astype(np.float64)

    def block_scores(sl):
        vb, wb = movers.block(sl)
        return rounded_scores(q64, vb, dt), rounded_scores(q64, wb, dt)

    # each moving answer's own (s, c), read from the very matrices its competitors come from
    mv = pair_mover >= 0
    for r0 in range(0, m, block):
        sel = np.flatnonzero(mv & (pair_mover >= r0) & (pair_mover < r0 + block))
        if sel.size:
            S, G = block_scores(slice(r0, min(m, r0 + block)))
            s_a[sel] = S[pair_row[sel], pair_mover[sel] - r0]
            c_a[sel] = G[pair_row[sel], pair_mover[sel] - r0]

    low = np.zeros(P, dtype=dt)  # the reference's max includes a 0 from every non-positive column
    high = np.full(P, large, dtype=dt)
    bad = np.zeros(P, dtype=bool)
    dg_low = np.full(P, np.nan)  # Δg of the competitor that sets each low (its float noise: /Δg)

    def absorb(ds: np.ndarray, dg: np.ndarray) -> None:
        """Fold competitors (columns) into every pair's bounds, with the reference's arithmetic
        (0 * inf = NaN propagates into the bounds and drops the pair, as in torch)."""
        nonlocal low, high, bad
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            alpha = ds / (dg + eps)
            pos, neg = dg > 0, dg < 0
            cand = pos * alpha
            j = np.argmax(np.where(np.isnan(cand), -np.inf, cand), axis=1)
            col_max = cand[np.arange(P), j]
            up = col_max > low
            dg_low[up] = dg[np.arange(P), j][up]
            low = np.maximum(low, np.max(cand, axis=1))
            high = np.minimum(high, np.min(neg * alpha + (~neg) * large, axis=1))
        bad |= np.any((dg == 0) & (ds > 0), axis=1)

    if P:
        has = np.isfinite(best_const)
        bc = np.where(has, best_const, 0.0).astype(dt)
        ds = np.where(has, bc - s_a, dt(0))[:, None]
        absorb(ds, np.where(has, c_a, dt(0))[:, None])
    for r0 in range(0, m, block):
        if P == 0:
            break
        sl = slice(r0, min(m, r0 + block))
        S, G = block_scores(sl)
        ds = S[pair_row] - s_a[:, None]
        dg = c_a[:, None] - G[pair_row]
        # the answer's own column: Δs = Δg = 0, contributes nothing (as in the reference)
        own = movers.ids[sl][None, :] == pair_id[:, None]
        absorb(np.where(own, dt(0), ds), np.where(own, dt(0), dg))
    with np.errstate(invalid="ignore"):
        keep = ~bad & (high >= low)  # NaN compares False: dropped
    return {"L": low[keep], "U": high[keep], "dgL": dg_low[keep]}


def m_parity_sweep(iv: dict[str, np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
    """The reference's point of most intersection: (γ*, the distinct endpoint values in order,
    the count after each group). γ* = 0 when no interval is kept or none is ever counted."""
    L, U = np.sort(iv["L"]), np.sort(iv["U"])
    if L.size == 0:
        return 0.0, np.zeros(1), np.zeros(1)
    # merge: an end goes first only when strictly smaller than the next start
    vals = np.concatenate([L, U])
    sign = np.concatenate([np.ones(L.size, np.int64), -np.ones(U.size, np.int64)])
    order = np.lexsort((-sign, vals))  # by value, starts (+1) before ends (-1)
    v, sg = vals[order], sign[order]
    run = np.cumsum(sg)
    last = np.ones(v.size, dtype=bool)
    last[:-1] = v[1:] != v[:-1]
    gv, gc = v[last], run[last]
    best = gc.max()
    g = float(gv[np.argmax(gc == best)]) if best > 0 else 0.0
    return g, gv.astype(np.float64), gc.astype(np.float64)


def m_parity_count(iv: dict[str, np.ndarray], gamma: float) -> float:
    """Number of pairs the sweep counts at γ: low <= γ < high."""
    L, U = iv["L"], iv["U"]
    g = L.dtype.type(gamma) if L.size else gamma
    return float(np.count_nonzero((L <= g) & (U > g)))


def rounded_scores(q64: np.ndarray, vectors: np.ndarray, dtype) -> np.ndarray:
    """q·v for float64 queries and (working-precision) vectors, computed in float64 and rounded
    to ``dtype``: equal vectors get equal scores."""
    return (q64 @ vectors.astype(np.float64).T).astype(dtype)


def rounded_topk(queries: np.ndarray, vectors: Any, k: int, ids: np.ndarray, exclude: Any = None,
                 block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine (records L2-normalised, as the reference does) with the scores formed
    like :func:`rounded_scores`, in the queries' precision; returned as float64 holding exactly
    those rounded values."""
    dt = np.result_type(queries.dtype, vectors.dtype, np.float32).type
    q64 = queries.astype(dt).astype(np.float64)

    def blocks():
        for r0 in range(0, vectors.shape[0], block):
            yield ids[r0 : r0 + block], normalize_rows(vectors[r0 : r0 + block]).astype(dt).astype(np.float64)

    top_ids, top_s = stream_topk(q64, blocks(), k, exclude=exclude)
    return top_ids, top_s.astype(dt).astype(np.float64)


def binding_slope(iv: dict[str, np.ndarray], gamma: float) -> float:
    """|Δg| of the competitor that set γ (a low of the sweep): γ = Δs / Δg carries the float
    noise of Δs and Δg (a few ulps of the scores) divided by |Δg|. NaN for γ = 0 or a γ given."""
    at = (iv["L"] == iv["L"].dtype.type(gamma)) & np.isfinite(iv["dgL"]) if iv["L"].size and gamma > 0 else None
    return float(np.abs(iv["dgL"][at]).min()) if at is not None and at.any() else float("nan")
