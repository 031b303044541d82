"""The validation objective of a candidate table as a function of γ: at one point, and exactly
over the whole range as a piecewise-constant curve (internal; see :mod:`nudge_sync.core.gamma`).

**At a point** (:class:`TableScorer`). Every element's score is closed-form; each validation
query's top k is taken with a row-wise partition (:class:`._ragged.RaggedGroups`) and scored by
the function :func:`nudge_sync.evaluate` uses (:func:`._metrics.metric_from_relevance`).
O(elements), no d.

**Over the range** (:func:`exact_curve`). Enumerating every crossing of every answer with every
competitor (the previous exact sweep) costs answers x candidates x crossings per query, which
explodes on dense labels: minutes on a corpus of NFCorpus's shape. Instead every query is refined
on its own by bisection of [0, t_hi], all queries of one depth at once:

* an item (query, cell) whose value is provably constant on its cell is *settled*
  (:func:`._cells.bound_items`: score ranges, top-k pruning, rank bounds);
* a small one becomes a *leaf*, solved exactly (:func:`._leaves.leaf_pieces`);
* the others are halved, each half keeping only the elements that may still reach the top k.

Branch and bound across queries: summed over the queries, the items' bounds give an upper and a
lower bound of the objective on each cell. A cell whose upper bound is below the best lower bound
found anywhere cannot hold the optimum, and its items are dropped (``prune=True``): its stretch of
the curve is reported as NaN ("proven below the best value"), everything else exactly. Every
stretch that reaches the best value is computed exactly, so the optimum, the first best plateau
and its ends are those of the full curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import SETTLE_TOL, Items, QueryMetric, answer_weights, bound_items
from .leaves import leaf_pieces
from .answer_ranks import answer_ranks, locate, metric_from_ranks
from .ragged import RaggedGroups

#: An item becomes a leaf once (its relevant answers) x (its kept elements) is at most this:
#: solving it in closed form is then cheaper than halving it further.
LEAF_EXPANSION = 256
#: Halving stops at this depth (cell width t_hi / 2**MAX_DEPTH); the item is then a leaf anyway.
MAX_DEPTH = 48
#: Elements bounded per step (a few arrays of this many doubles each); leaves take 1/16 of it,
#: since they pair every answer with every element of their item.
BATCH_ELEMENTS = 1 << 21
#: Breakpoints closer than this (relative to the range) are merged (see :mod:`.leaves`).
BREAK_TOL = 1e-11
#: A cell is pruned when its upper bound (a sum over queries, each worth at most 1) is below the
#: best lower bound by more than this: far above rounding, far below one rank change.
PRUNE_TOL = 1e-9


@dataclass
class Sweep:
    """Objective on the open pieces of [0, t_hi]: breaks (t) and the value on each piece (NaN:
    not computed, proven below the best value)."""

    breaks: np.ndarray  # sorted interior breakpoints, length s
    values: np.ndarray  # length s + 1
    t_hi: float


class TableScorer:
    """Per-query metric values of a candidate table at any point (see the module doc). The
    curve parameters are laid out in padded blocks once, so each point costs a few elementwise
    operations and a partition per block."""

    def __init__(self, C, name: str, k: int):
        self.C, self.name, self.k = C, name, int(k)
        self.groups = RaggedGroups(C.row_ptr)
        self.ans = np.flatnonzero(C.el_ans)
        self.ans_row = C.el_row[self.ans]
        self.where = locate(self.groups, self.ans)
        w = answer_weights(C, name, self.k)
        self.weight = None if w is None else w[self.ans]
        # padding scores -inf: a saturated constant -inf (N), a flat line at -inf (M)
        fill = {"alpha": -np.inf if C.family == "m" else 0.0, "beta": 0.0, "delta": 0.0, "kappa": -np.inf,
                "cos_theta": 2.0}
        names = ("alpha", "beta") if C.family == "m" else tuple(fill)
        self.params = [{n: np.where(pos >= 0, getattr(C, n)[np.maximum(pos, 0)], fill[n]) for n in names}
                       for _, pos in self.groups.blocks]

    def row_values(self, point) -> np.ndarray:
        padded = [_scores(self.C.family, p, point) for p in self.params]
        rank = answer_ranks(padded, self.where, self.ans.size, self.k)
        return metric_from_ranks(self.name, self.k, rank, self.ans_row, self.weight, self.C.n_val)

    def value_at(self, gamma: float) -> float:
        if self.C.n_val == 0:
            return float("nan")
        return float(self.row_values(self.C.point_of_gamma(gamma)).sum() / self.C.n_val)


def _scores(family: str, p: dict[str, np.ndarray], point) -> np.ndarray:
    """Scores of padded curve parameters at one point (as :meth:`Candidates.values`)."""
    if family == "m":
        return p["alpha"] + point * p["beta"]
    c, s = point
    return np.where(p["cos_theta"] >= c, p["kappa"], p["alpha"] * c + p["beta"] * s + p["delta"])


class _Regions:
    """Cells already finished (settled or solved), per depth: the sums over their queries of an
    upper and a lower bound of the value. Every other query's value on a cell is bounded by the
    region of that query containing it, so a cell's bounds add these up over the depths."""

    def __init__(self):
        self.by_depth: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, depth: int, cell: np.ndarray, ub: np.ndarray, lb: np.ndarray) -> None:
        while len(self.by_depth) <= depth:
            self.by_depth.append((np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
        c0, u0, l0 = self.by_depth[depth]
        cells, inv = np.unique(np.concatenate([c0, cell]), return_inverse=True)
        u = np.bincount(inv, weights=np.concatenate([u0, ub]), minlength=cells.size)
        lo = np.bincount(inv, weights=np.concatenate([l0, lb]), minlength=cells.size)
        self.by_depth[depth] = (cells, u, lo)

    def cell_bounds(self, depth: int, cell: np.ndarray, ub: np.ndarray, lb: np.ndarray):
        """Per item of this depth: (upper, lower) bound of the objective's sum on its cell, from
        the items of this depth in the same cell and the finished regions containing it."""
        cells, inv = np.unique(cell, return_inverse=True)
        cu = np.bincount(inv, weights=ub, minlength=cells.size)
        cl = np.bincount(inv, weights=lb, minlength=cells.size)
        for d, (rc, ru, rl) in enumerate(self.by_depth[:depth + 1]):
            if rc.size == 0:
                continue
            anc = cells >> (depth - d)
            pos = np.minimum(np.searchsorted(rc, anc), rc.size - 1)
            hit = rc[pos] == anc
            cu += np.where(hit, ru[pos], 0.0)
            cl += np.where(hit, rl[pos], 0.0)
        return cu[inv], cl[inv]


def exact_curve(C, name: str, k: int, windows=None, best: float = -np.inf, prune: bool = True) -> Sweep:
    """The objective (metric ``name@k`` averaged over the table's queries) on every open piece
    of the ``windows`` (disjoint (start, end) pairs in the table's parameter; default the whole
    range [0, C.t_hi]), NaN elsewhere; see the module doc. ``best``: a value of the objective's
    sum over the queries reached on some piece (e.g. at a point scored directly), where the
    pruning starts."""
    t_hi = float(C.t_hi)
    win = np.array([(0.0, t_hi)] if windows is None else windows, dtype=np.float64).reshape(-1, 2)
    sw = _refine_all(C, name, k, win, prune, best)
    found = np.nanmax(sw.values) * max(C.n_val, 1) if np.isfinite(sw.values).any() else -np.inf
    if found < best - PRUNE_TOL:  # the seed was a tie worth more than any piece: prune from scratch
        sw = _refine_all(C, name, k, win, prune, -np.inf)
    return sw


def _refine_all(C, name: str, k: int, windows: np.ndarray, prune: bool, best: float) -> Sweep:
    """Refinement of every query over the windows (module doc)."""
    metric = QueryMetric(C, name, k)
    t_hi = float(C.t_hi)
    tol = BREAK_TOL * max(1.0, t_hi)
    items = _root_items(C, windows)
    regions = _Regions()
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (query row, start, value)
    pruned: list[tuple[np.ndarray, np.ndarray]] = []
    depth = 0
    while len(items):
        ub, lb, keep, expansion = _bound_in_batches(metric, items)
        settled = ub - lb <= SETTLE_TOL
        small = (expansion <= LEAF_EXPANSION) | (items.t1 - items.t0 <= 2 * tol) | (depth >= MAX_DEPTH)
        leaf, split = ~settled & small, ~settled & ~small
        if prune:
            cell_ub, cell_lb = regions.cell_bounds(depth, items.cell, ub, lb)
            best = max(best, float(cell_lb.max()))
            dead = cell_ub < best - PRUNE_TOL
            if dead.any():
                _, first = np.unique(items.cell[dead], return_index=True)
                pruned.append((items.t0[dead][first], items.t1[dead][first]))
                leaf &= ~dead
                split &= ~dead
        pieces.append((items.row[settled], items.t0[settled], ub[settled]))
        regions.add(depth, items.cell[settled], ub[settled], ub[settled])
        if leaf.any():
            leaves = items.subset(keep, leaf, with_ranges=True)
            spans = leaves.batches(BATCH_ELEMENTS // 16)
            parts = [leaf_pieces(metric, leaves.slice(a, b), tol) for a, b in spans]
            p_item = np.concatenate([p[0] + a for p, (a, _) in zip(parts, spans)])
            p_t0 = np.concatenate([p[1] for p in parts])
            value = np.concatenate([p[3] for p in parts])
            pieces.append((leaves.row[p_item], p_t0, value))
            top = np.full(len(leaves), -np.inf)
            bottom = np.full(len(leaves), np.inf)
            np.maximum.at(top, p_item, value)
            np.minimum.at(bottom, p_item, value)
            regions.add(depth, leaves.cell, np.where(np.isfinite(top), top, ub[leaf]),
                        np.where(np.isfinite(bottom), bottom, lb[leaf]))
        items = items.subset(keep, split).halves()
        if depth == 0:
            metric.count_twins(items.el)
        depth += 1
    return _assemble(pieces, pruned, windows, C.n_val, t_hi, tol)


def _bound_in_batches(metric: QueryMetric, items: Items):
    """:func:`bound_items` over batches of at most BATCH_ELEMENTS elements (bounded memory), the
    score ranges set on ``items`` as one does."""
    parts, lo, hi = [], [], []
    for a, b in items.batches(BATCH_ELEMENTS):
        part = items.slice(a, b)
        parts.append(bound_items(metric, part))
        lo.append(part.lo)
        hi.append(part.hi)
    items.lo, items.hi = np.concatenate(lo), np.concatenate(hi)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


def _root_items(C, windows: np.ndarray) -> Items:
    """One item per query with an answer among its candidates and per window (queries without
    one score 0 everywhere). Window w is cell w of depth 0, so the cells of different windows
    never share an index at any depth."""
    has = np.bincount(C.el_row[C.el_ans], minlength=C.n_val) > 0 if C.el_ans.any() else np.zeros(C.n_val, bool)
    rows = np.flatnonzero(has)
    n_w = windows.shape[0]
    row = np.tile(rows, n_w)
    cell = np.repeat(np.arange(n_w, dtype=np.int64), rows.size)
    sizes = np.diff(C.row_ptr)[row]
    ptr = np.zeros(row.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    el = np.repeat(C.row_ptr[row] - ptr[:-1], sizes) + np.arange(ptr[-1])
    return Items(row, cell, windows[cell, 0], windows[cell, 1], ptr, el)


def _assemble(pieces, pruned, windows: np.ndarray, n_val: int, t_hi: float, tol: float) -> Sweep:
    """Sum the queries' piecewise-constant values into the objective on [0, t_hi]; pruned
    stretches and everything outside the windows become NaN."""
    row = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int64)
    start = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0)
    val = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0)
    # per query, its value changes only where consecutive pieces differ; a query's first piece
    # counts from 0 (stretches before it are masked below when they are not computed)
    order = np.lexsort((start, row))
    row, start, val = row[order], start[order], val[order]
    first = np.ones(row.size, dtype=bool)
    first[1:] = row[1:] != row[:-1]
    delta = val - np.where(first, 0.0, np.roll(val, 1))
    change = first | (np.abs(delta) > SETTLE_TOL)  # the same value from two code paths: no event
    at = np.where(first, 0.0, start)[change]
    d = delta[change]
    head = at <= tol
    v0 = float(d[head].sum())
    at, d = at[~head], d[~head]
    o = np.argsort(at, kind="stable")
    at, d = at[o], d[o]
    new = np.ones(at.size, dtype=bool)
    new[1:] = np.diff(at) > tol
    ut = at[new]
    dsum = np.bincount(np.cumsum(new) - 1, weights=d, minlength=ut.size)
    keep = ut < t_hi - tol
    breaks, values = ut[keep], np.concatenate([[v0], v0 + np.cumsum(dsum[keep])]) / max(n_val, 1)
    # not computed: pruned cells, and the gaps between windows
    gaps0 = np.concatenate([[0.0], windows[:, 1]])
    gaps1 = np.concatenate([windows[:, 0], [t_hi]])
    p0 = [gaps0] + [p[0] for p in pruned]
    p1 = [gaps1] + [p[1] for p in pruned]
    return Sweep(*_mask(breaks, values, np.concatenate(p0), np.concatenate(p1), t_hi, tol), t_hi)


def _mask(breaks, values, p0, p1, t_hi, tol):
    """The piecewise function with the (disjoint) stretches [p0, p1] set to NaN."""
    real = p1 - p0 > tol
    p0, p1 = p0[real], p1[real]
    if p0.size == 0:
        return breaks, values
    pts = np.unique(np.concatenate([breaks, p0, p1]))
    pts = pts[(pts > tol) & (pts < t_hi - tol)]
    edges = np.concatenate([[0.0], pts, [t_hi]])
    mid = (edges[:-1] + edges[1:]) / 2.0
    vals = values[np.searchsorted(breaks, mid)]
    o = np.argsort(p0)
    j = np.searchsorted(p0[o], mid, side="right") - 1
    inside = (j >= 0) & (mid < p1[o][np.maximum(j, 0)])
    return pts, np.where(inside, np.nan, vals)
