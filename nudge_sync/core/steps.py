"""NUDGE-N with per-record steps by label count (internal): record i moves by
γ_i = γ·(n_i / median n)^α, n_i the number of training queries it answers (NUDGE moves every
record by one shared γ, however much evidence is behind it; α = 0 is NUDGE-N exactly).

One candidate table serves every α of a set and the plain search (α = 0) together: the range of
γ is cut into pieces and each record's curve is bounded, per piece, over the union of the φ it
can take at any α of the set (φ_i = arccos(1 - γ_i/2), monotone in γ and in α). At any (α, γ) of
a piece every record lies inside its interval, so the argument of :mod:`.gamma` holds: a record
whose upper bound is below the K-th largest lower bound of that piece never enters the top K.
The two products (validation x movers x d) are the plain search's; only the bounds are wider.

The objective at one (α, γ) is the table scored with a per-element point
(:class:`ScaledScorer`); α > 0 has no exact curve, so its γ is chosen on a geometric grid
refined twice around its best point (as fine mode refines, on points).
"""

from __future__ import annotations

import numpy as np

from . import gamma as gm
from .answer_ranks import answer_ranks, metric_from_ranks
from .answers import Answers
from .candidates import Movers, assemble
from .curve import TableScorer, _scores

#: The α that ``step_alpha="auto"`` tries beside plain NUDGE-N (α = 0).
STEP_ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: Pieces of the γ range for the pruning bounds (as candidates.N_PRUNE_SEGMENTS, in γ).
N_PIECES = 4
#: The α > 0 grid: γ_hi · 2^-j for j = 0 .. GRID_HALVINGS (the optimum γ shrinks as α grows).
GRID_HALVINGS = 8
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


def _end_values(A, B, b, theta, jump, e):
    """Scores at φ = e (per record, broadcast as rows): rotation or saturated; skip-rule
    records score a before θ."""
    rot = np.where(jump, A, A * np.cos(e) + b * np.sin(e))
    return np.where(theta <= e, B, rot)


def _bounds(A, B, cos_t, sin_t, theta, jump, starts, ends):
    """Per piece, (max, min) of every score curve over its own [start, end] in φ; (S, *A.shape).
    A rotation R cos(φ - ψ) strays at most R (1 - cos(w/2)) beyond its end values (then it
    saturates continuously at c = q·Ĝ); a skip-rule record takes a before θ and c from θ on."""
    b = (B - A * cos_t) / sin_t
    R = np.sqrt(A * A + b * b)
    S = starts.shape[0]
    hi = np.empty((S,) + A.shape)
    lo = np.empty((S,) + A.shape)
    for s in range(S):
        v0 = _end_values(A, B, b, theta, jump, starts[s])
        v1 = _end_values(A, B, b, theta, jump, ends[s])
        pad = _MARGIN * (1.0 + R)
        ex = np.where(jump, 0.0, R * (1.0 - np.cos((ends[s] - starts[s]) / 2.0))) + pad
        hi[s] = np.maximum(v0, v1) + ex
        lo[s] = np.minimum(v0, v1) - ex
        if np.any(jump):  # a jump inside the piece: both values are taken
            inside = jump & (theta > starts[s]) & (theta <= ends[s])
            hi[s] = np.where(inside, np.maximum(A, B) + pad, hi[s])
            lo[s] = np.where(inside, np.minimum(A, B) - pad, lo[s])
    return hi, lo


def build_table(qv: np.ndarray, movers: Movers, ls: np.ndarray, alphas, const_ids: np.ndarray,
                const_scores: np.ndarray, answers: Answers, k: int, t_hi: float):
    """NUDGE-N candidate table valid at every α in ``alphas`` ∪ {0} and γ in [0, γ(t_hi)]."""
    n_val = qv.shape[0]
    m = movers.ids.size
    g_hi = float(gm.phi_to_gamma(t_hi))
    a_lo, a_hi = min(0.0, *alphas), max(0.0, *alphas)
    mult_lo = np.exp(np.minimum(a_lo * ls, a_hi * ls))
    mult_hi = np.exp(np.maximum(a_lo * ls, a_hi * ls))
    edges = np.linspace(0.0, g_hi, N_PIECES + 1)
    starts = gm.gamma_to_phi(np.minimum(4.0, edges[:-1, None] * mult_lo[None, :]))  # (S, m)
    ends = gm.gamma_to_phi(np.minimum(4.0, edges[1:, None] * mult_hi[None, :]))
    theta = np.arccos(np.clip(movers.cos_theta, -1.0, 1.0))
    sin_m = np.where(movers.sin_theta > 0, movers.sin_theta, 1.0)
    top = np.full((N_PIECES, n_val, k), -np.inf)
    kc = min(k, const_scores.shape[1])
    top[:, :, :kc] = const_scores[None, :, :kc]
    kept = []
    block = max(1, gm.CHUNK_ELEMS // max(1, n_val))
    for r0 in range(0, m, block):
        sl = slice(r0, min(m, r0 + block))
        vb, wb = movers.block(sl)
        A = (qv @ vb.T).astype(np.float64)
        B = (qv @ wb.T).astype(np.float64)
        hi, lo = _bounds(A, B, movers.cos_theta[sl], sin_m[sl], theta[sl], movers.jump[sl], starts[:, sl], ends[:, sl])
        w = A.shape[1]
        for s in range(N_PIECES):  # this block's K largest minima per query, merged
            best = lo[s] if w <= k else np.partition(lo[s], w - k, axis=1)[:, w - k:]
            both = np.concatenate([top[s], best], axis=1)
            top[s] = np.partition(both, both.shape[1] - k, axis=1)[:, both.shape[1] - k:]
        jj, ii = np.nonzero(np.any(hi >= top.min(axis=2)[:, :, None], axis=0))
        kept.append((jj, ii + r0, A[jj, ii], B[jj, ii], hi[:, jj, ii]))
    if kept:
        j, i, a, b = (np.concatenate([x[c] for x in kept]) for c in range(4))
        hi = np.concatenate([x[4] for x in kept], axis=1)
        ok = np.any(hi >= top.min(axis=2)[:, j], axis=0)  # the final thresholds are the tightest
        j, i, a, b = j[ok], i[ok], a[ok], b[ok]
    else:
        j = i = np.zeros(0, dtype=np.int64)
        a = b = np.zeros(0)
    return assemble("n", n_val, movers, j, i, a, b, const_ids, const_scores, answers, t_hi)


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

    def scaled_values(self, gamma: float, alpha: float) -> np.ndarray:
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

    def __init__(self, scorer: ScaledScorer, alpha: float, g_hi: float):
        self.scorer, self.alpha, self.n = scorer, float(alpha), max(scorer.C.n_val, 1)
        self.rows: dict[float, np.ndarray] = {}
        self.pts = np.concatenate([[0.0], g_hi * 2.0 ** -np.arange(GRID_HALVINGS, -1, -1.0)]) if g_hi > 0 else np.zeros(1)
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
