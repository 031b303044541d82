"""NUDGE-N with per-record steps by label count (internal): record i moves by
γ_i = γ·(n_i / median n)^α, n_i the number of training queries it answers (NUDGE moves every
record by one shared γ, however much evidence is behind it; α = 0 is NUDGE-N exactly).

One candidate table (:class:`StepTable`) serves every α of a set, each over its own range
[0, cap_α] of γ (:func:`alpha_caps`): each range is cut into N_PIECES pieces and each record's
curve is bounded, per piece, over the union of the φ it can take at any α of the set in that
piece (φ_i = arccos(1 - γ_i/2), monotone in γ). At any (α, γ) of piece s every record lies inside
its interval, so the argument of :mod:`.gamma` holds: a record whose upper bound is below the
K-th largest lower bound of that piece never enters the top K. Under ``step_alpha="auto"`` the
table is fed the very (validation x movers) products plain NUDGE-N's table is built from.

The objective at one (α, γ) is the table scored with a per-element point
(:class:`ScaledScorer`); α > 0 has no exact curve, so its γ is chosen on a geometric grid
refined twice around its best point (as fine mode refines, on points).
"""

from __future__ import annotations

import numpy as np

from . import gamma as gm
from .answer_ranks import answer_ranks, metric_from_ranks
from .answers import Answers
from . import candidates as cand
from .candidates import Movers, assemble
from .curve import TableScorer, _scores

#: The α that ``step_alpha="auto"`` tries beside plain NUDGE-N (α = 0).
STEP_ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: ``step_alpha="auto"`` searches each α > 0 up to the γ where the records with the most evidence
#: (the CAP_QUANTILE of n_i) step STEP_RANGE times the reference's largest γ (0.48: its grid's end;
#: see :func:`alpha_caps`).
STEP_RANGE = 2.0
STEP_GAMMA_REF = 0.48
CAP_QUANTILE = 0.99
#: Pieces of the γ range for the pruning bounds (as candidates.N_PRUNE_SEGMENTS, in γ).
N_PIECES = 4
#: The α > 0 grid: γ_hi · 2^-j for j = 0 .. GRID_HALVINGS (the optimum γ shrinks as α grows).
GRID_HALVINGS = 8
#: The same under ``step_alpha="auto"``, whose γ_hi is α's cap (:func:`alpha_caps`): the optimum
#: sat at 0.4-0.7 of the cap on every shape measured (bench/results/quality.md).
CAP_HALVINGS = 5
#: Points added between the best grid point's neighbours, twice.
REFINE_POINTS = 4
_MARGIN = 1e-9  # relative widening of the float64 bounds (rounding of the bound arithmetic)


def log_scales(n_train: np.ndarray) -> np.ndarray:
    """log(n_i / median n) per moving record (empty: empty)."""
    n = np.asarray(n_train, dtype=np.float64)
    if n.size == 0:
        return n
    return np.log(n / float(np.median(n)))


def step_gammas(gamma: float, alpha: float, ls: np.ndarray) -> np.ndarray:
    """γ_i per record (capped at 4, the half turn: beyond it nothing changes on the unit sphere)."""
    return np.minimum(4.0, gamma * np.exp(alpha * ls))


def alpha_caps(ls: np.ndarray, alphas, g_hi: float) -> dict[float, float]:
    """α -> the top of its γ search: STEP_RANGE·STEP_GAMMA_REF / (n_q / median n)^α, n_q the
    CAP_QUANTILE of the n_i (capped at g_hi). Why: the optimum γ shrinks as α grows (measured
    0.01-0.4 of plain NUDGE-N's γ0 on the dense and synthetic shapes, up to 1.03·γ0 on SciFact;
    γ0 0.30-0.69), it is known before plain NUDGE-N's table is built (both tables are then built
    from the same products), and the table over the whole range
    keeps most (query, record) pairs on dense labels (716,000 of 1.13 M on the dense 3.6k shape,
    17x plain NUDGE-N's table, several fits' time and, at 200k records, memory beyond the machine)."""
    top = float(np.quantile(ls, CAP_QUANTILE)) if ls.size else 0.0
    return {float(a): min(g_hi, STEP_RANGE * STEP_GAMMA_REF * float(np.exp(-a * top))) for a in alphas}


def _end_values(A, B, b, theta, jump, e):
    """Scores at φ = e (per record, broadcast as rows): rotation or saturated; skip-rule
    records score a before θ. In A's precision."""
    dt = A.dtype.type
    rot = np.where(jump, A, A * np.cos(e).astype(dt) + b * np.sin(e).astype(dt))
    return np.where(theta <= e, B, rot)


def _bounds(A, B, cos_t, sin_t, theta, jump, starts, ends, margin=_MARGIN):
    """Per piece, (max, min) of every score curve over its own [start, end] in φ; (S, *A.shape),
    in A's precision, widened by ``margin`` (relative: the rounding of that precision).
    A rotation R cos(φ - ψ) strays at most R (1 - cos(w/2)) beyond its end values (then it
    saturates continuously at c = q·Ĝ); a skip-rule record takes a before θ and c from θ on.
    Works on a dense (queries x block) block with per-record arrays broadcast as rows, and on
    gathered entries with per-entry arrays alike."""
    dt = A.dtype.type
    b = (B - A * cos_t) / sin_t
    R = np.sqrt(A * A + b * b)
    S = starts.shape[0]
    hi = np.empty((S,) + A.shape, dtype=A.dtype)
    lo = np.empty((S,) + A.shape, dtype=A.dtype)
    pad = dt(margin) * (1 + R)
    any_jump = bool(np.any(jump))
    for s in range(S):
        v0 = _end_values(A, B, b, theta, jump, starts[s])
        v1 = _end_values(A, B, b, theta, jump, ends[s])
        ex = R * (1.0 - np.cos((ends[s] - starts[s]) / 2.0)).astype(dt)
        if any_jump:
            ex = np.where(jump, dt(0), ex)
        ex += pad
        np.add(np.maximum(v0, v1), ex, out=hi[s])
        np.subtract(np.minimum(v0, v1), ex, out=lo[s])
        if any_jump:  # a jump inside the piece: both values are taken
            inside = jump & (theta > starts[s]) & (theta <= ends[s])
            hi[s] = np.where(inside, np.maximum(A, B) + pad, hi[s])
            lo[s] = np.where(inside, np.minimum(A, B) - pad, lo[s])
    return hi, lo


class StepTable:
    """NUDGE-N candidate table valid at every α of ``caps`` (α -> γ cap) and γ in [0, its cap],
    built from blocks of the (validation x movers) products (:meth:`add_block`), e.g. the very
    blocks plain NUDGE-N's table is built from (``build_candidates(on_block=...)``): the products
    are most of either table's cost on the sparse shapes.

    Pruned per block as :func:`.candidates.build_candidates` prunes: a cheap test first (each
    curve's maximum over the record's whole range against the lowest threshold), then the
    per-piece bounds, densely in the working precision when most entries pass, else on the
    gathered entries in float64; the entries kept are filtered again by the thresholds so far
    whenever they double (memory: about one block beyond the table)."""

    def __init__(self, qv: np.ndarray, movers: Movers, ls: np.ndarray, caps: dict, const_scores: np.ndarray, k: int):
        m = movers.ids.size
        self.movers, self.k, self.n_val, self.wdt = movers, int(k), qv.shape[0], qv.dtype
        self.margin = 1e-5 if self.wdt == np.float32 else 1e-12  # tests in the working precision
        frac = np.linspace(0.0, 1.0, N_PIECES + 1)[:, None]
        self.starts, self.ends = np.full((N_PIECES, m), np.inf), np.zeros((N_PIECES, m))
        for alpha, cap in caps.items():  # piece s of every α: γ in cap·[s, s + 1]/N_PIECES
            g = float(cap) * np.exp(alpha * ls)[None, :]
            self.starts = np.minimum(self.starts, gm.gamma_to_phi(np.minimum(4.0, frac[:-1] * g)))
            self.ends = np.maximum(self.ends, gm.gamma_to_phi(np.minimum(4.0, frac[1:] * g)))
        self.t_max = self.ends.max(axis=0)  # each record's largest φ
        self.t_hi = float(self.t_max.max()) if m else 0.0
        self.theta = np.arccos(np.clip(movers.cos_theta, -1.0, 1.0))
        self.sin_m = np.where(movers.sin_theta > 0, movers.sin_theta, 1.0)
        self.top = np.full((N_PIECES, self.n_val, self.k), -np.inf)
        kc = min(self.k, const_scores.shape[1])
        self.top[:, :, :kc] = const_scores[None, :, :kc]
        self.kept: list[tuple[np.ndarray, ...]] = []
        self.n_kept, self.n_next = 0, cand.CHUNK_ELEMS

    def add_block(self, r0: int, sl: slice, A: np.ndarray, Bm: np.ndarray) -> None:
        """Movers ``sl`` (starting at ``r0``): A = q·v, Bm = q·Ĝ in the working precision."""
        wdt, top, st, en, th = self.wdt, self.top, self.starts[:, sl], self.ends[:, sl], self.theta[sl]
        # every value of a curve on [0, φ_max] is at most max(a, a cos φ_max) + |b| sin φ_max (a cos φ
        # and b sin φ are monotone up to π/2; |b| beyond), or c once saturated; a or c under the
        # skip rule. Thresholds only grow: the lowest one so far selects a superset
        t_low = cand._margin(top.min(axis=2).min(axis=0), self.margin, wdt)
        cos_w, sin_w, jump = self.movers.cos_theta[sl].astype(wdt), self.sin_m[sl].astype(wdt), self.movers.jump[sl]
        t_max = self.t_max[sl]
        cmax, smax = np.cos(t_max).astype(wdt), np.where(t_max > np.pi / 2, 1.0, np.sin(t_max)).astype(wdt)
        up = np.maximum(A, A * cmax) + np.abs((Bm - A * cos_w) / sin_w) * smax
        if jump.any():
            up = np.where(jump, A, up)
        sat = th <= t_max
        if sat.any():
            up = np.where(sat, np.maximum(up, Bm), up)
        selected = up >= t_low
        del up
        k = self.k
        if np.count_nonzero(selected) > cand.DENSE_SHARE * selected.size:
            hi, lo = _bounds(A, Bm, cos_w, sin_w, th, jump, st, en, self.margin)
            w = A.shape[1]
            for s in range(N_PIECES):  # this block's K largest minima per query, merged
                best = lo[s] if w <= k else np.partition(lo[s], w - k, axis=1)[:, w - k:]
                both = np.concatenate([top[s], best.astype(np.float64)], axis=1)
                top[s] = np.partition(both, both.shape[1] - k, axis=1)[:, both.shape[1] - k:]
            jj, ii = np.nonzero(np.any(hi >= top.min(axis=2).astype(wdt)[:, :, None], axis=0))
            hi = hi[:, jj, ii].astype(np.float64)
        else:
            jj, ii = np.nonzero(selected)
            x = ii + r0
            hi, lo = _bounds(A[jj, ii].astype(np.float64), Bm[jj, ii].astype(np.float64), self.movers.cos_theta[x],
                             self.sin_m[x], self.theta[x], self.movers.jump[x], self.starts[:, x], self.ends[:, x])
            for s in range(N_PIECES):  # raise the thresholds with this block's minima
                up = lo[s] > top[s].min(axis=1)[jj]
                top[s] = cand._merge_top(top[s], jj[up], lo[s][up], ii[up], A.shape[1])
            ok = np.any(hi >= top.min(axis=2)[:, jj], axis=0)
            jj, ii, hi = jj[ok], ii[ok], hi[:, ok]
        self.kept.append((jj, ii + r0, A[jj, ii].astype(np.float64), Bm[jj, ii].astype(np.float64), hi))
        self.n_kept += jj.size
        if self.n_kept > self.n_next:  # filter what is kept by today's thresholds: bounded memory
            self.kept = [_filter(x, top) for x in self.kept]
            self.n_kept = sum(x[0].size for x in self.kept)
            self.n_next = max(self.n_next, 2 * self.n_kept)

    def table(self, const_ids: np.ndarray, const_scores: np.ndarray, answers: Answers):
        """The table, once every block is in."""
        kept = [_filter(x, self.top) for x in self.kept]  # the final thresholds are the tightest
        self.kept = []
        if kept:
            j, i, a, b = (np.concatenate([x[c] for x in kept]) for c in range(4))
        else:
            j = i = np.zeros(0, dtype=np.int64)
            a = b = np.zeros(0)
        return assemble("n", self.n_val, self.movers, j, i, a, b, const_ids, const_scores, answers, self.t_hi)


def build_table(qv: np.ndarray, movers: Movers, ls: np.ndarray, caps: dict, const_ids: np.ndarray,
                const_scores: np.ndarray, answers: Answers, k: int):
    """:class:`StepTable` over its own products."""
    st = StepTable(qv, movers, ls, caps, const_scores, k)
    block = max(1, gm.CHUNK_ELEMS // max(1, qv.shape[0]))
    for r0 in range(0, movers.ids.size, block):
        sl = slice(r0, min(movers.ids.size, r0 + block))
        vb, wb = movers.block(sl)
        st.add_block(r0, sl, qv @ vb.T, qv @ wb.T)
    return st.table(const_ids, const_scores, answers)


def _filter(entry: tuple, top: np.ndarray) -> tuple:
    """Kept entries (row, mover, a, b, max per piece) that may still reach some piece's top K."""
    j, i, a, b, hi = entry
    ok = np.any(hi >= top.min(axis=2)[:, j], axis=0)
    return j[ok], i[ok], a[ok], b[ok], hi[:, ok]


class ScaledScorer(TableScorer):
    """Per-query objective of a table at (γ, α): every mover at its own γ_i."""

    def __init__(self, C, name: str, k: int, movers: Movers, ls: np.ndarray):
        super().__init__(C, name, k)
        order = np.argsort(movers.ids, kind="stable")
        sid = movers.ids[order]
        el_ls = np.zeros(C.el_id.size)
        if sid.size:
            p = np.minimum(np.searchsorted(sid, C.el_id), sid.size - 1)
            mov = (sid[p] == C.el_id) & (C.cos_theta <= 1.0)  # constants carry cos θ = 2
            el_ls[mov] = ls[order[p[mov]]]
        self.ls = [np.where(pos >= 0, el_ls[np.maximum(pos, 0)], 0.0) for _, pos in self.groups.blocks]
        self._mult: dict[float, list[np.ndarray]] = {}
        self._zero: np.ndarray | None = None

    def scaled_values(self, gamma: float, alpha: float) -> np.ndarray:
        if gamma == 0:  # nothing moves, whatever α: scored once
            if self._zero is None:
                self._zero = self.row_values(self.C.point_of_gamma(0.0))
            return self._zero
        if alpha not in self._mult:  # (n_i / median n)^α per element, once per α
            self._mult[alpha] = [np.exp(alpha * ls) for ls in self.ls]
        padded = []
        for p, mult in zip(self.params, self._mult[alpha]):
            g = np.minimum(4.0, gamma * mult)
            padded.append(_scores("n", p, (1.0 - g / 2.0, np.sqrt(g * (4.0 - g)) / 2.0)))
        rank = answer_ranks(padded, self.where, self.ans.size, self.k)
        return metric_from_ranks(self.name, self.k, rank, self.ans_row, self.weight, self.C.n_val)


class AlphaSearch:
    """γ for one α > 0 on points: the geometric grid (:meth:`coarse`), then REFINE_POINTS between
    the best point's neighbours per :meth:`refine` round. Ties: the smallest γ (γ = 0 first:
    nothing moves without validation evidence). Per-query values are kept for every point."""

    def __init__(self, scorer: ScaledScorer, alpha: float, g_hi: float, halvings: int = GRID_HALVINGS):
        self.scorer, self.alpha, self.n = scorer, float(alpha), max(scorer.C.n_val, 1)
        self.rows: dict[float, np.ndarray] = {}
        self.pts = np.concatenate([[0.0], g_hi * 2.0 ** -np.arange(halvings, -1, -1.0)]) if g_hi > 0 else np.zeros(1)
        self.vals = np.array([self._value(g) for g in self.pts])

    def _value(self, g: float) -> float:
        self.rows[g] = self.scorer.scaled_values(g, self.alpha)
        return float(self.rows[g].sum() / self.n)

    def best(self) -> tuple[float, float]:
        """(γ, objective) of the best point so far."""
        o = np.argsort(self.pts, kind="stable")
        self.pts, self.vals = self.pts[o], self.vals[o]
        r = np.round(self.vals, gm._ROUND)
        b = int(np.flatnonzero(r == r.max())[0])
        return float(self.pts[b]), float(self.vals[b])

    def refine(self, rounds: int = 2) -> AlphaSearch:
        for _ in range(rounds):
            gam, _ = self.best()
            b = int(np.flatnonzero(self.pts == gam)[0])
            lo, hi = self.pts[max(b - 1, 0)], self.pts[min(b + 1, self.pts.size - 1)]
            new = lo + (hi - lo) * np.arange(1, REFINE_POINTS + 1) / (REFINE_POINTS + 1)
            new = new[~np.isin(new, self.pts)]
            self.pts = np.concatenate([self.pts, new])
            self.vals = np.concatenate([self.vals, [self._value(g) for g in new]])
        self.best()
        return self
