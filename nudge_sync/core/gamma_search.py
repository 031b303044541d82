"""Choosing γ on the validation objective, fine and exact modes (internal).

Both score the objective directly at a set of points (γ = 0, points every 1/FINE_GRID of the
range and, when the objective is the reference's own criterion, the reference's grid, so that
neither mode can do worse than parity mode on it), then compute the exact piecewise-constant
curve (:func:`nudge_sync.core.curve.exact_curve`):

* ``"exact"``: over the whole range: the optimum of the continuous objective, certified. Its
  cost follows the number of rank changes along the whole range, which on dense labels (tens of
  answers per query, hundreds of close competitors) is several times a parity fit;
* ``"fine"`` (default): only in the windows around the FINE_WINDOWS best points (from the
  previous to the next point): exact there, at a fraction of the cost. It can miss a narrow
  plateau that no scored point lands near; bench/bench_core.py measures the gap to ``"exact"``.
  Small candidate tables (FINE_EXACT_BELOW) get the exact curve over the whole range.

Tie rule, both modes: γ = 0 if it is among the best (nothing moves without validation
evidence); else the first (smallest-γ) best open plateau, at its middle (the left end is a tie
point, NUDGE.md H4/§4.6); else the smallest best scored point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import gamma as gm
from .cells import restrict
from .curve import Sweep, TableScorer, exact_curve

#: Beyond the given grid (NUDGE-N: the reference's, up to γ = 0.48), points are scored every
#: 1/FINE_GRID of the range (in φ for NUDGE-N, γ for NUDGE-M).
FINE_GRID = 16
#: Fine mode refines around this many best scored points, twice: on the range's grid, then on
#: FINE_SUB more points around each (on that window's own, smaller table).
FINE_WINDOWS = 3
FINE_SUB = 6
#: Fine mode computes the exact curve over the whole range when the candidate table has at most
#: this many elements: there it costs no more than the windows (SciFact's table: 2,232 elements,
#: 12 ms either way) and a narrow best plateau between scored points cannot be missed (a 60-record
#: collection's best plateau, γ 0.07..0.10, fell between two points: fine mode kept γ = 0).
FINE_EXACT_BELOW = 10_000


def choose_gamma(C: gm.Candidates, obj: gm.Objective, scorer: TableScorer, mode: str,
                 grid: np.ndarray | None = None, pvals: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray, dict[str, Any]]:
    """(γ, the γ values reported, the objective there, extra attributes: ``plateaus_`` and
    ``before``, the objective at γ = 0). ``grid``: γ values to score directly as well; ``pvals``:
    the objective at :func:`scored_points` when already computed."""
    t_hi = float(C.t_hi)
    pts_t = scored_points(C, t_hi, grid)
    pvals = _score(scorer, pts_t) if pvals is None else np.asarray(pvals, dtype=np.float64)
    if t_hi <= 0:
        return 0.0, np.zeros(1), pvals[:1], {"plateaus_": np.array([[0.0, 0.0, pvals[0]]]), "before": float(pvals[0])}
    if mode == "exact" or C.el_id.size <= FINE_EXACT_BELOW:
        sw = exact_curve(C, obj.name, obj.k, np.array([(0.0, t_hi)]), best=float(pvals.max()) * max(C.n_val, 1))
    else:
        sw, pts_t, pvals = _fine_curve(C, obj, scorer, pts_t, pvals)
    ts, te, vals = gm.plateaus(sw)
    gs, ge = C.gamma_of_t(ts), C.gamma_of_t(te)
    mids = (gs + ge) / 2.0
    pts_g = np.asarray(C.gamma_of_t(pts_t), dtype=np.float64)
    r_plat = np.round(vals, gm._ROUND)
    r_pts = np.round(pvals, gm._ROUND)
    computed = (ge > gs) & np.isfinite(vals)
    best = max(r_plat[computed].max(initial=-np.inf), r_pts.max())
    cand = np.flatnonzero(computed & (r_plat == best))
    if r_pts[0] == best:
        gam = 0.0
    elif cand.size:
        gam = float(mids[cand[0]])
    else:
        gam = float(pts_g[np.flatnonzero(r_pts == best)[0]])
    gammas = np.concatenate([mids[computed], pts_g])
    curve = np.concatenate([vals[computed], pvals])
    order = np.argsort(gammas, kind="stable")
    extra = {"plateaus_": np.stack([gs, ge, vals], axis=1), "before": float(pvals[0])}
    return gam, gammas[order], curve[order], extra


def _score(scorer: TableScorer, ts: np.ndarray) -> np.ndarray:
    """The objective (mean over the queries) at each t."""
    C = scorer.C
    return np.array([scorer.row_values(C.point_of_t(np.float64(t))).sum() for t in ts]) / max(C.n_val, 1)


def _fine_curve(C, obj, scorer, pts_t, pvals):
    """Coarse to fine: around each best scored point, FINE_SUB more points on the cell's own
    (much smaller) table, then the exact curve around the best of those. Returns the curve and
    every scored point (t sorted, 0 first) with its value."""
    n = max(C.n_val, 1)
    sweeps, all_t, all_v = [], [pts_t], [pvals]
    for w0, w1 in _windows(pts_t, pvals, float(C.t_hi)):
        Cw = restrict(C, scorer.groups, obj.k, w0, w1)
        sub = TableScorer(Cw, obj.name, obj.k)
        tw = w0 + (w1 - w0) * np.arange(1, FINE_SUB + 1) / (FINE_SUB + 1)
        vw = _score(sub, tw)
        inside = (pts_t >= w0) & (pts_t <= w1)
        t_in = np.concatenate([pts_t[inside], tw])
        v_in = np.concatenate([pvals[inside], vw])
        o = np.argsort(t_in, kind="stable")
        best = max(float(pvals.max()), float(vw.max())) * n
        narrow = _windows(t_in[o], v_in[o], w1)
        sweeps.append(exact_curve(Cw, obj.name, obj.k, narrow, best=best))
        all_t.append(tw)
        all_v.append(vw)
    t = np.concatenate(all_t)
    v = np.concatenate(all_v)
    o = np.argsort(t, kind="stable")
    return merge_sweeps(sweeps), t[o], v[o]


def scored_points(C, t_hi: float, grid: np.ndarray | None) -> np.ndarray:
    """t of the points scored directly: 0 first, then the given grid's (within the range) and
    even ones every t_hi / FINE_GRID beyond the grid's last point."""
    t = np.zeros(0)
    if grid is not None:
        g = np.asarray(grid, dtype=np.float64)
        t = np.asarray(gm.gamma_to_phi(g) if C.family == "n" else g, dtype=np.float64)
        t = t[(t > 0) & (t <= t_hi)]
    step = t_hi / FINE_GRID
    start = t.max(initial=0.0)
    even = start + step * np.arange(1, int(np.floor((t_hi - start) / step + 1e-9)) + 1)
    if even.size == 0 or even[-1] < t_hi - 1e-12 * max(1.0, t_hi):
        even = np.append(even, t_hi)
    return np.concatenate([[0.0], np.unique(np.concatenate([t, even]))])


def _windows(pts_t: np.ndarray, pvals: np.ndarray, t_hi: float) -> np.ndarray:
    """From the previous to the next scored point around each of the FINE_WINDOWS best scored
    points (ties: smaller t first), merged where they overlap."""
    order = np.lexsort((pts_t, -np.round(pvals, gm._ROUND)))[:FINE_WINDOWS]
    lo = pts_t[np.maximum(order - 1, 0)]
    hi = pts_t[np.minimum(order + 1, pts_t.size - 1)]
    hi = np.where(order == pts_t.size - 1, t_hi, hi)
    o = np.argsort(lo)
    lo, hi = lo[o], hi[o]
    out = [[lo[0], hi[0]]]
    for a, b in zip(lo[1:], hi[1:]):
        if a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.array(out)


def merge_sweeps(sweeps: list[Sweep]) -> Sweep:
    """One curve from curves computed on disjoint stretches of the same range (NaN elsewhere)."""
    t_hi = sweeps[0].t_hi
    breaks = np.unique(np.concatenate([sw.breaks for sw in sweeps]))
    edges = np.concatenate([[0.0], breaks, [t_hi]])
    mid = (edges[:-1] + edges[1:]) / 2.0
    values = np.full(mid.size, np.nan)
    for sw in sweeps:
        v = sw.values[np.searchsorted(sw.breaks, mid)]
        values = np.where(np.isfinite(v), v, values)
    return Sweep(breaks, values, t_hi)
