"""γ search machinery for NUDGE-N and NUDGE-M (internal).

Only the records that answer a training query move, and each moving record's score against a
validation query is a closed-form function of γ:

* NUDGE-N, with φ = arccos(1 - γ/2):  s(φ) = a·cos φ + b·sin φ while φ < θ, then the constant
  c = q·Ĝ (saturation), where a = q·v, θ = angle(v, Ĝ) and b = q·u = (c - a·cos θ)/sin θ
  (u: the unit vector of span(v, G) orthogonal to v). With the reference's ρ < 0 skip rule such a
  record scores a until φ reaches θ and then jumps to c.
* NUDGE-M:  s(γ) = a + γ·c.

Everything else is a constant competitor, summarised per validation query by its top-K scores
(the validation context merged with the base records that never move). So after one pass of
matrix products (two products of n_val x moved x d, in blocks) every γ costs O(surviving pairs),
with no d and no corpus-size factor.

Pruning: for query j, thr_j = K-th largest of {constant scores} ∪ {min over the γ range of each
moving record's score}. A moving record whose max over the range is below thr_j always has K
records strictly above it, so it can never enter the top K and is dropped. (NUDGE-M applies the
test on each of M_PRUNE_SEGMENTS pieces of its range: lines that lead at large γ would otherwise
survive everywhere.)

The surviving (query, record) pairs form a *candidate table*: per validation query, a row of
elements (surviving movers + top-K constants), each with its curve parameters, id, and answer
flag. All metrics are then computed from the rank of each answer element within its row under
the shared tie rule (score desc, id asc), the rule of :func:`nudge_sync._metrics.rank`:

* ``rank``  = number of row elements that beat the answer (recall, ndcg),
* ``rank'`` = number of NON-answer row elements that beat it; min over the query's answers is
  the position of its first answer (hit, mrr).

Fine search ("exact sweep"): a pair's rank only changes where its curve crosses a competitor's
curve or at a saturation angle. For each answer pair we collect those points in closed form,
evaluate its rank directly (not incrementally: robust to rounding) at the midpoint of each
segment between them, and turn the rank changes into events. Summing events over pairs (through
per-query level counters for hit/mrr) gives the validation objective on every open piece of the
γ range. Breakpoints closer than BREAK_TOL are merged: mathematically coincident crossings come
out a few ulps apart and the slivers between them have no reliably reproducible value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._answers import Answers

#: Parity grid of the reference NUDGE-N (same float values as ``[0.02*x for x in range(25)]``).
PARITY_GRID_N = np.array([0.02 * x for x in range(25)], dtype=np.float64)

#: Work arrays (pairs x competitors, queries x records) are kept under this many elements.
CHUNK_ELEMS = 1 << 19
_ROUND = 12  # objective values are compared after rounding (they are sums of rationals)
BREAK_TOL = 1e-11  # breakpoints closer than this (relative to the range) are merged


# -- curve evaluation ----------------------------------------------------------------------------


def n_point(gamma: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(cos φ, sin φ) for NUDGE-N's γ, computed as the reference does: 1-γ/2 and √(γ(4-γ))/2."""
    g = np.asarray(gamma, dtype=np.float64)
    return 1.0 - g / 2.0, np.sqrt(np.clip(g * (4.0 - g), 0.0, None)) / 2.0


def phi_to_gamma(phi: np.ndarray | float) -> np.ndarray:
    return 2.0 * (1.0 - np.cos(np.asarray(phi, dtype=np.float64)))


def gamma_to_phi(gamma: np.ndarray | float) -> np.ndarray:
    return np.arccos(np.clip(1.0 - np.asarray(gamma, dtype=np.float64) / 2.0, -1.0, 1.0))


@dataclass
class Candidates:
    """Per validation query, the elements that may enter its top-K (see module doc).

    N family: value = κ if cosθ >= cos φ else α cos φ + β sin φ + δ. Rotating records: δ = 0;
    skip-rule records: α = β = 0, δ = q·v; constants: θ = 0 (cosθ stored as 2, i.e. "saturated
    from the start") and κ = their score.
    M family: value = α + γ β (constants: β = 0).
    """

    family: str  # "n" or "m"
    n_val: int
    row_ptr: np.ndarray
    el_row: np.ndarray
    el_id: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    cos_theta: np.ndarray  # N only
    theta: np.ndarray  # N only (0 for constants)
    kappa: np.ndarray  # N only
    delta: np.ndarray  # N only
    jump: np.ndarray  # N only: ρ<0 records under the skip rule (piecewise constant)
    el_ans: np.ndarray
    el_grade: np.ndarray
    pair_el: np.ndarray  # element index of each answer element
    pair_row: np.ndarray
    n_answers: np.ndarray  # per query: distinct answers (all, not only candidates)
    answers: Answers  # kept validation answers (rows aligned with the table)
    t_hi: float  # end of the γ range in the family's parameter (φ for N, γ for M)
    _x_pair: np.ndarray | None = field(default=None, repr=False)
    _x_el: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_pairs(self) -> int:
        return int(self.pair_el.size)

    def values(self, idx: np.ndarray, point) -> np.ndarray:
        """Scores of elements ``idx`` at ``point`` (N: (cos φ, sin φ) arrays/scalars; M: γ)."""
        if self.family == "m":
            return self.alpha[idx] + point * self.beta[idx]
        c, s = point
        lin = self.alpha[idx] * c + self.beta[idx] * s + self.delta[idx]
        return np.where(self.cos_theta[idx] >= c, self.kappa[idx], lin)

    def point_of_gamma(self, gamma: float):
        return n_point(gamma) if self.family == "n" else float(gamma)

    def point_of_t(self, t: np.ndarray):
        return (np.cos(t), np.sin(t)) if self.family == "n" else t

    def gamma_of_t(self, t):
        return phi_to_gamma(t) if self.family == "n" else np.asarray(t, dtype=np.float64)

    def expansion(self) -> tuple[np.ndarray, np.ndarray]:
        """(pair index, competitor element) for every answer pair and every other row element."""
        if self._x_pair is None:
            starts = self.row_ptr[self.pair_row]
            lens = self.row_ptr[self.pair_row + 1] - starts
            owner, pos = _expand(starts, lens)
            keep = pos != self.pair_el[owner]
            self._x_pair, self._x_el = owner[keep], pos[keep]
        return self._x_pair, self._x_el


def _expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [starts[i], starts[i]+lens[i]): (owner i, position) for every position."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    owner = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
    offs = np.zeros(lens.size, dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    pos = np.arange(total, dtype=np.int64) - offs[owner] + starts[owner]
    return owner, pos


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


def _pair_lookup(rows: np.ndarray, ids: np.ndarray, answers: Answers) -> tuple[np.ndarray, np.ndarray]:
    """For (row, id) items: found in answers' row? and position in ``answers.ids``."""
    found = np.zeros(rows.size, dtype=bool)
    pos = np.zeros(rows.size, dtype=np.int64)
    if rows.size == 0 or answers.ids.size == 0:
        return found, pos
    uniq = np.unique(np.concatenate([answers.ids, ids]))
    m = np.int64(uniq.size + 1)
    akey = answers.row_index() * m + np.searchsorted(uniq, answers.ids)
    key = rows * m + np.searchsorted(uniq, ids)
    p = np.minimum(np.searchsorted(akey, key), akey.size - 1)
    found = akey[p] == key
    return found, p


#: NUDGE-M pruning splits [0, Γ] into this many pieces (lines are bounded piece by piece).
M_PRUNE_SEGMENTS = 8


def _n_b(a, c, cos_t, sin_t):
    """b = q·u from a = q·v and c = q·Ĝ, since Ĝ = cos θ v + sin θ u. Its error grows like
    1/sin θ but enters scores multiplied by sin φ <= sin θ (φ < θ before saturation)."""
    return (c - a * cos_t) / sin_t


def _n_bounds(a, c, cT, sT, reached, jump, cos_t, sin_t):
    """NUDGE-N: (max, min) of each score curve over φ in [0, t_hi]; cT, sT = cos/sin of
    T = min(θ, t_hi), the end of the moving piece; ``reached``: θ <= t_hi, the record saturates
    (score c = q·Ĝ) inside the range. Skip-rule records take the values a, then c if reached."""
    b = _n_b(a, c, cos_t, sin_t)
    fT = np.where(reached, c, a * cT + b * sT)
    dT = -a * sT + b * cT
    R = np.hypot(a, b)
    hi = np.where((b > 0) & (dT < 0), R, np.maximum(a, fT))  # interior maximum of R cos(φ - ψ)
    lo = np.where((b < 0) & (dT > 0), -R, np.minimum(a, fT))
    if np.any(jump):
        kap = np.where(reached, c, a)
        hi = np.where(jump, np.maximum(a, kap), hi)
        lo = np.where(jump, np.minimum(a, kap), lo)
    return hi[None], lo[None]


def _m_bounds(a, b, edges):
    """NUDGE-M: per piece [g_s, g_s+1], (max, min) of the line a + γ·b; shape (S, n)."""
    e = a[None, :] + edges[:, None] * b[None, :]
    return np.maximum(e[:-1], e[1:]), np.minimum(e[:-1], e[1:])


def _merge_top(top: np.ndarray, rows: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Per row, the K largest of ``top[row]`` and the sparse (row, val) items."""
    if rows.size == 0:
        return top
    n, K = top.shape
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
) -> Candidates:
    """Candidate table for the range t in [0, t_hi] (φ for N, γ for M), for top-``k`` metrics.

    Pruning (see the module doc) runs per block of moving records on the dense (n_val x block)
    score matrices with cheap necessary conditions only (a score can exceed thr only if its
    amplitude R = hypot(a, b) does, N; or its piece maximum does, M; a minimum can exceed thr only
    if the score at γ = 0 does), and evaluates exact bounds on the sparse remainder.
    """
    n_val = qv.shape[0]
    m = movers.ids.size
    k = int(k)
    wdt = qv.dtype
    margin_rel = 1e-5 if wdt == np.float32 else 1e-12  # dense tests in the working precision
    if family == "n":
        edges = None
        n_seg = 1
        theta_m = np.arccos(np.clip(movers.cos_theta, -1.0, 1.0))
        reached_m = theta_m <= t_hi
        T = np.minimum(theta_m, t_hi)
        cT, sT = np.cos(T), np.sin(T)
        cos_w = movers.cos_theta.astype(wdt)[None, :]
        sin_w = np.where(movers.sin_theta > 0, movers.sin_theta, 1.0).astype(wdt)[None, :]
    else:
        n_seg = M_PRUNE_SEGMENTS if t_hi > 0 else 1
        edges = np.linspace(0.0, t_hi, n_seg + 1)
    # Running K-th largest "guaranteed" score per query and piece: constants and movers' minima.
    top = np.full((n_seg, n_val, k), -np.inf)
    kc = min(k, const_scores.shape[1])
    top[:, :, :kc] = const_scores[None, :, :kc]

    def bounds(a, b, idx):
        if family == "n":
            return _n_bounds(a, b, cT[idx], sT[idx], reached_m[idx], movers.jump[idx], movers.cos_theta[idx],
                             movers.sin_theta[idx])
        return _m_bounds(a, b, edges)

    kept: list[tuple[np.ndarray, ...]] = []
    block = max(1, CHUNK_ELEMS // max(1, n_val))
    for r0 in range(0, m, block):
        sl = slice(r0, min(m, r0 + block))
        vb, wb = movers.block(sl)
        A = qv @ vb.T  # working precision; exact bounds below are in float64
        Bm = qv @ wb.T
        del vb, wb
        if skip_pruning:
            jj, ii = np.nonzero(np.ones(A.shape, dtype=bool))
            kept.append((jj, ii + r0, A[jj, ii].astype(np.float64), Bm[jj, ii].astype(np.float64)))
            continue
        def raise_thresholds(sgi, mask):
            jj, ii = np.nonzero(mask)
            if jj.size:
                a = A[jj, ii].astype(np.float64)
                b = Bm[jj, ii].astype(np.float64)
                lo = bounds(a, b, ii + r0)[1][sgi]
                ok = lo > top[sgi].min(axis=1)[jj]
                top[sgi] = _merge_top(top[sgi], jj[ok], lo[ok])
            t = top[sgi].min(axis=1)
            return (t - margin_rel * (1.0 + np.abs(t))).astype(wdt)[:, None]

        if family == "n":
            # only records scoring above thr at γ = 0 can raise it (min <= a); then a score can
            # exceed thr only if its amplitude R = hypot(a, b) does
            t = top[0].min(axis=1)
            t = raise_thresholds(0, A > (t - margin_rel * (1.0 + np.abs(t))).astype(wdt)[:, None])
            Bu = (Bm - A * cos_w[:, sl]) / sin_w[:, sl]  # q·u
            cand = (t < 0) | (A * A + Bu * Bu >= t * t)
            del Bu
        else:
            cand = np.zeros(A.shape, dtype=bool)
            e0 = A
            for sgi in range(n_seg):
                e1 = A + wdt.type(edges[sgi + 1]) * Bm
                t = top[sgi].min(axis=1)
                t_w = (t - margin_rel * (1.0 + np.abs(t))).astype(wdt)[:, None]
                t_w = raise_thresholds(sgi, np.minimum(e0, e1) > t_w)
                cand |= np.maximum(e0, e1) >= t_w
                e0 = e1
        thr = top.min(axis=2)
        jj, ii = np.nonzero(cand)
        a = A[jj, ii].astype(np.float64)
        b = Bm[jj, ii].astype(np.float64)
        hi, _ = bounds(a, b, ii + r0)
        ok = np.any(hi >= thr[:, jj], axis=0)
        kept.append((jj[ok], ii[ok] + r0, a[ok], b[ok]))
    if kept:
        j = np.concatenate([x[0] for x in kept])
        i = np.concatenate([x[1] for x in kept])
        a = np.concatenate([x[2] for x in kept])
        b = np.concatenate([x[3] for x in kept])
        if not skip_pruning:  # the final thresholds are the tightest
            hi, _ = bounds(a, b, i)
            ok = np.any(hi >= top.min(axis=2)[:, j], axis=0)
            j, i, a, b = j[ok], i[ok], a[ok], b[ok]
    else:
        j = i = np.zeros(0, dtype=np.int64)
        a = b = np.zeros(0)
    # Constants (non-padding) become elements too.
    cj, cc = np.nonzero(const_ids >= 0)
    c_ids = const_ids[cj, cc]
    c_s = const_scores[cj, cc]
    rows = np.concatenate([j, cj])
    order = np.argsort(rows, kind="stable")
    el_row = rows[order]
    el_id = np.concatenate([movers.ids[i], c_ids])[order]
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
    found, pos = _pair_lookup(el_row, el_id, answers)
    grades = np.where(found, answers.all_grades()[pos], 0.0)
    pair_el = np.flatnonzero(found)
    return Candidates(
        family=family, n_val=n_val, row_ptr=row_ptr, el_row=el_row, el_id=el_id, alpha=alpha,
        beta=beta, cos_theta=cos_t, theta=theta, kappa=kappa, delta=delta, jump=jump, el_ans=found,
        el_grade=grades, pair_el=pair_el, pair_row=el_row[pair_el], n_answers=answers.lengths(),
        answers=answers, t_hi=float(t_hi),
    )


# -- objective from ranks --------------------------------------------------------------------------


def ideal_dcg(answers: Answers, k: int) -> np.ndarray:
    from ._metrics import _ideal_dcg

    return _ideal_dcg(answers, k)


@dataclass
class Objective:
    name: str
    k: int

    @property
    def uses_prime(self) -> bool:
        """hit/mrr depend on the first answer's position: rank among non-answers."""
        return self.name in ("hit", "mrr")

    def pair_weights(self, C: Candidates) -> np.ndarray:
        """Separable metrics: value = Σ_pairs weight_p · g(rank_p) / n_val."""
        if self.name == "recall":
            return 1.0 / np.maximum(np.minimum(C.n_answers[C.pair_row], self.k), 1)
        if self.name == "ndcg":
            idcg = ideal_dcg(C.answers, self.k)
            return C.el_grade[C.pair_el] / np.where(idcg > 0, idcg, 1.0)[C.pair_row]
        raise AssertionError

    def pair_gain(self, rank: np.ndarray) -> np.ndarray:
        r = np.asarray(rank, dtype=np.float64)
        if self.name == "recall":
            return (r < self.k).astype(np.float64)
        return np.where(r < self.k, 1.0 / np.log2(r + 2.0), 0.0)

    def level_weights(self) -> np.ndarray:
        """hit/mrr: value_j = Σ_ℓ w_ℓ [min rank' <= ℓ] for ℓ < k."""
        if self.name == "hit":
            w = np.zeros(self.k)
            w[-1] = 1.0
            return w
        g = np.append(1.0 / np.arange(1, self.k + 1), 0.0)
        return g[:-1] - g[1:]

    def per_query(self, C: Candidates, rank: np.ndarray, rank_p: np.ndarray) -> np.ndarray:
        out = np.zeros(C.n_val)
        if C.n_pairs == 0:
            return out
        if self.uses_prime:
            best = np.full(C.n_val, np.inf)
            np.minimum.at(best, C.pair_row, rank_p)
            if self.name == "hit":
                return (best < self.k).astype(np.float64)
            return np.where(best < self.k, 1.0 / (best + 1.0), 0.0)
        w = self.pair_weights(C) * self.pair_gain(rank)
        return np.bincount(C.pair_row, weights=w, minlength=C.n_val)


def ranks_at(C: Candidates, point) -> tuple[np.ndarray, np.ndarray]:
    """(rank, rank') of every answer pair at one point (see module doc)."""
    if C.n_pairs == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    xp, xe = C.expansion()
    s = C.values(np.arange(C.el_id.size), point)
    sp = s[C.pair_el][xp]
    sc = s[xe]
    beats = (sc > sp) | ((sc == sp) & (C.el_id[xe] < C.el_id[C.pair_el][xp]))
    rank = np.bincount(xp, weights=beats, minlength=C.n_pairs).astype(np.int64)
    rank_p = np.bincount(xp, weights=beats & ~C.el_ans[xe], minlength=C.n_pairs).astype(np.int64)
    return rank, rank_p


def objective_at(C: Candidates, obj: Objective, gamma: float) -> float:
    if C.n_val == 0:
        return float("nan")
    r, rp = ranks_at(C, C.point_of_gamma(gamma))
    return float(obj.per_query(C, r, rp).sum() / C.n_val)


# -- exact sweep (fine mode) ---------------------------------------------------------------------


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


def _pair_breakpoints(C: Candidates, xp: np.ndarray, xe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All t in (0, t_hi) where the answer of pair xp may change order with element xe."""
    pe = C.pair_el[xp]
    T = C.t_hi
    if C.family == "m":
        da = C.alpha[pe] - C.alpha[xe]
        db = C.beta[pe] - C.beta[xe]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(db != 0, -da / db, np.nan)
        ok = (t > 0) & (t < T)
        return xp[ok], t[ok]
    th_a, th_e = C.theta[pe], C.theta[xe]
    t1 = np.minimum(np.minimum(th_a, th_e), T)
    t2 = np.minimum(np.maximum(th_a, th_e), T)
    owners, ts = [], []
    for lo, hi in ((np.zeros_like(t1), t1), (t1, t2), (t2, np.full_like(t1, T))):
        mid = (lo + hi) / 2.0
        mov_a = mid < th_a
        mov_e = mid < th_e
        A = np.where(mov_a, C.alpha[pe], 0.0) - np.where(mov_e, C.alpha[xe], 0.0)
        B = np.where(mov_a, C.beta[pe], 0.0) - np.where(mov_e, C.beta[xe], 0.0)
        Cc = np.where(mov_a, C.delta[pe], C.kappa[pe]) - np.where(mov_e, C.delta[xe], C.kappa[xe])
        nonempty = hi > lo
        for r in _roots_sinusoid(A, B, Cc, lo, hi):
            ok = nonempty & ~np.isnan(r)
            owners.append(xp[ok])
            ts.append(r[ok])
    # Saturation angles are always breakpoints: jumps of skip-rule records are discontinuities,
    # and a crossing can sit exactly on a piece boundary (two records with the same Ĝ meet at the
    # later saturation and tie from there on), where the open-interval root search misses it.
    for el in (pe, xe):
        ok = (C.theta[el] > 0) & (C.theta[el] < T)
        owners.append(xp[ok])
        ts.append(C.theta[el][ok])
    return np.concatenate(owners), np.concatenate(ts)


@dataclass
class Sweep:
    """Objective on the open segments of [0, t_hi]: breaks (t) and the value on each segment."""

    breaks: np.ndarray  # sorted interior breakpoints, length s
    values: np.ndarray  # length s + 1
    t_hi: float


def exact_sweep(C: Candidates, obj: Objective) -> Sweep:
    n_val = C.n_val
    if C.n_pairs == 0 or n_val == 0:
        return Sweep(np.zeros(0), np.zeros(1), C.t_hi)
    xp, xe = C.expansion()
    # 1. breakpoints per pair
    bp_owner, bp_t = _pair_breakpoints(C, xp, xe)
    order = np.lexsort((bp_t, bp_owner))
    bp_owner, bp_t = bp_owner[order], bp_t[order]
    if bp_t.size:
        keep = np.ones(bp_t.size, dtype=bool)
        keep[1:] = (bp_owner[1:] != bp_owner[:-1]) | (bp_t[1:] != bp_t[:-1])
        bp_owner, bp_t = bp_owner[keep], bp_t[keep]
    n_bp = np.bincount(bp_owner, minlength=C.n_pairs)
    bp_ptr = np.zeros(C.n_pairs + 1, dtype=np.int64)
    np.cumsum(n_bp, out=bp_ptr[1:])
    # 2. segments per pair: boundaries 0, b1..bn, t_hi -> n+1 midpoints
    n_seg = n_bp + 1
    seg_ptr = np.zeros(C.n_pairs + 1, dtype=np.int64)
    np.cumsum(n_seg, out=seg_ptr[1:])
    seg_owner = np.repeat(np.arange(C.n_pairs), n_seg)
    k_in = np.arange(seg_ptr[-1]) - seg_ptr[seg_owner]  # segment index within its pair
    if bp_t.size:
        last = bp_t.size - 1
        left = np.where(k_in == 0, 0.0, bp_t[np.clip(bp_ptr[seg_owner] + k_in - 1, 0, last)])
        right = np.where(k_in == n_bp[seg_owner], C.t_hi, bp_t[np.clip(bp_ptr[seg_owner] + k_in, 0, last)])
    else:
        left = np.zeros(seg_owner.size)
        right = np.full(seg_owner.size, C.t_hi)
    mid = (left + right) / 2.0
    # 3. direct rank at each midpoint, chunked over segments
    row_len = (C.row_ptr[C.pair_row + 1] - C.row_ptr[C.pair_row])
    seg_cost = row_len[seg_owner]
    rank = np.zeros(seg_owner.size, dtype=np.int64)
    csum = np.cumsum(seg_cost)
    start = 0
    while start < seg_owner.size:
        base = csum[start - 1] if start else 0
        stop = int(np.searchsorted(csum, base + CHUNK_ELEMS, side="right"))
        stop = max(stop, start + 1)
        so = seg_owner[start:stop]
        starts = C.row_ptr[C.pair_row[so]]
        owner, pos = _expand(starts, row_len[so])
        pe = C.pair_el[so]
        point = C.point_of_t(mid[start:stop])
        if C.family == "n":
            pt_o = (point[0][owner], point[1][owner])
            sa = C.values(pe, point)[owner]
        else:
            pt_o = point[owner]
            sa = C.values(pe, point)[owner]
        sc = C.values(pos, pt_o)
        beats = (sc > sa) | ((sc == sa) & (C.el_id[pos] < C.el_id[pe][owner]))
        beats &= pos != pe[owner]
        if obj.uses_prime:
            beats &= ~C.el_ans[pos]
        rank[start:stop] = np.bincount(owner, weights=beats, minlength=stop - start).astype(np.int64)
        start = stop
    # 4. events: where a pair's rank differs from its previous segment
    first = seg_ptr[:-1]
    init_rank = rank[first]
    change = np.ones(rank.size, dtype=bool)
    change[first] = False
    change[1:] &= rank[1:] != rank[:-1]
    ev = np.flatnonzero(change)
    ev_pair = seg_owner[ev]
    ev_t = left[ev]
    ev_old = rank[ev - 1]
    ev_new = rank[ev]
    # 5. combine into the objective's events
    if not obj.uses_prime:
        w = obj.pair_weights(C)
        v0 = float(np.sum(w * obj.pair_gain(init_rank)))
        g_t = ev_t
        g_d = w[ev_pair] * (obj.pair_gain(ev_new) - obj.pair_gain(ev_old))
    else:
        levels = obj.level_weights()
        q_of = C.pair_row
        v0 = 0.0
        g_t_l, g_d_l = [], []
        order = np.lexsort((ev_t, q_of[ev_pair]))
        eq = q_of[ev_pair][order]
        et = ev_t[order]
        eo, en = ev_old[order], ev_new[order]
        for lvl, wl in enumerate(levels):
            if wl == 0:
                continue
            cnt0 = np.bincount(q_of, weights=(init_rank <= lvl), minlength=n_val)
            v0 += wl * np.count_nonzero(cnt0 > 0)
            d = (en <= lvl).astype(np.int64) - (eo <= lvl).astype(np.int64)
            nz = d != 0
            if not nz.any():
                continue
            q, t, d = eq[nz], et[nz], d[nz]
            # running count within each query (events sorted by query then t)
            cs = np.cumsum(d)
            qstart = np.ones(q.size, dtype=bool)
            qstart[1:] = q[1:] != q[:-1]
            offset = np.maximum.accumulate(np.where(qstart, np.arange(q.size), 0))
            run = cs - (cs[offset] - d[offset])  # cumulative d within the query, up to this event
            after = cnt0[q] + run
            before = after - d
            flip = (after > 0).astype(np.int64) - (before > 0).astype(np.int64)
            f = flip != 0
            g_t_l.append(t[f])
            g_d_l.append(wl * flip[f].astype(np.float64))
        g_t = np.concatenate(g_t_l) if g_t_l else np.zeros(0)
        g_d = np.concatenate(g_d_l) if g_d_l else np.zeros(0)
    if g_t.size == 0 or C.t_hi <= 0:
        return Sweep(np.zeros(0), np.array([v0 / n_val]), C.t_hi)
    order = np.argsort(g_t, kind="stable")
    g_t, g_d = g_t[order], g_d[order]
    # Events closer than BREAK_TOL are one event: crossings that coincide mathematically (e.g. the
    # same two records crossing for several queries) come out a few ulps apart, and the sliver
    # between them would carry a value that no representable γ reliably reproduces.
    new = np.ones(g_t.size, dtype=bool)
    new[1:] = np.diff(g_t) > BREAK_TOL * max(1.0, C.t_hi)
    cluster = np.cumsum(new) - 1
    ut = g_t[new]
    dsum = np.bincount(cluster, weights=g_d, minlength=ut.size)
    # Slivers at the ends of the range go the same way: an event within the tolerance of 0 sets
    # the first piece's value, one within the tolerance of t_hi (typically a crossing exactly at
    # the last saturation angle) is dropped.
    tol = BREAK_TOL * max(1.0, C.t_hi)
    head = ut <= tol
    v0 += float(dsum[head].sum())
    keep = ~head & (ut < C.t_hi - tol)
    ut, dsum = ut[keep], dsum[keep]
    vals = np.concatenate([[v0], v0 + np.cumsum(dsum)]) / n_val
    return Sweep(ut, vals, C.t_hi)


def plateaus(sw: Sweep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge adjacent segments with equal value: (start t, end t, value) arrays."""
    edges = np.concatenate([[0.0], sw.breaks, [sw.t_hi]])
    v = np.round(sw.values, _ROUND)
    new = np.ones(v.size, dtype=bool)
    new[1:] = v[1:] != v[:-1]
    idx = np.flatnonzero(new)
    ends = np.append(idx[1:], v.size)
    return edges[idx], edges[ends], sw.values[idx]


# -- NUDGE-M parity: interval sweep --------------------------------------------------------------
#
# For a validation pair (q, a) and a competitor j, a is at least as good as j at γ iff
# Δs <= γ·Δg with Δs = s_j - s_a and Δg = c_a - c_j. The pair's interval [L, U] intersects these
# half-lines over all j (with γ >= 0). Division is exact (no +1e-8), and Δs, Δg of the pair (q, a)
# against j are the exact negations of those of (q, j) against a, because every score is read from
# the same computed matrix entry: a crossing of two answers of one query therefore yields
# bit-identical endpoints U_a == L_b.
#
# What the reference does at such a crossing is decided by its +1e-8 in float32: an endpoint whose
# binding |Δg| is small enough for fl32(Δg + 1e-8) != fl32(Δg) (|Δg| < 0.25) is pushed outward by
# an ulp (the interval is effectively closed there: both answers count at the crossing), otherwise
# the endpoints stay equal and the reference's grouped sweep counts [L, U) (the ending answer no
# longer counts). We keep exact values and reproduce that outcome with an infinitesimal shift in
# the sweep's sort key, so parity holds for multi-answer validation queries too.

def _shifted(dg: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Would the reference's ``Δg + 1e-8``, computed in ``dtype`` (the inputs' precision: torch
    keeps float32 arrays in float32), differ from Δg, i.e. move the endpoint outward?"""
    dt = np.dtype(dtype).type
    d = dg.astype(dt)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(dg) & ((d + dt(1e-8)) != d)


def m_parity_intervals(
    qv: np.ndarray,
    movers: Movers,
    pair_row: np.ndarray,
    pair_mover: np.ndarray,
    pair_s: np.ndarray,
    pair_id: np.ndarray,
    best_const: np.ndarray,
) -> dict[str, np.ndarray]:
    """Intervals of the validation pairs (see the comment above).

    ``pair_mover``: index into ``movers`` of the pair's answer, or -1 when the answer does not
    move (its score is then ``pair_s`` and its slope 0). ``best_const``: per pair, the best
    constant competitor score other than the answer (-inf if none). Returns a dict with L, U,
    valid, and the binding Δg of each endpoint (dgL, dgU).
    """
    P = pair_row.size
    m = movers.ids.size
    s_a = pair_s.astype(np.float64).copy()
    c_a = np.zeros(P)
    block = max(1, CHUNK_ELEMS // max(P, qv.shape[0], 1))

    def block_scores(sl):
        vb, wb = movers.block(sl)
        return (qv @ vb.T).astype(np.float64), (qv @ wb.T).astype(np.float64)

    # pass 1: each moving answer's own (s, c), read from the block matrices used in pass 2
    mv = pair_mover >= 0
    for r0 in range(0, m, block):
        sel = np.flatnonzero(mv & (pair_mover >= r0) & (pair_mover < r0 + block))
        if sel.size == 0:
            continue
        S, G = block_scores(slice(r0, min(m, r0 + block)))
        s_a[sel] = S[pair_row[sel], pair_mover[sel] - r0]
        c_a[sel] = G[pair_row[sel], pair_mover[sel] - r0]

    L = np.full(P, -np.inf)
    U = np.full(P, np.inf)
    dgL = np.full(P, np.nan)
    dgU = np.full(P, np.nan)
    bad = np.zeros(P, dtype=bool)

    def absorb(ds: np.ndarray, dg: np.ndarray, mask: np.ndarray) -> None:
        nonlocal bad
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = ds / dg
        pos = mask & (dg > 0)
        neg = mask & (dg < 0)
        bad |= np.any(mask & (dg == 0) & (ds > 0), axis=1)
        lo = np.where(pos, ratio, -np.inf)
        hi = np.where(neg, ratio, np.inf)
        il = np.argmax(lo, axis=1)
        ih = np.argmin(hi, axis=1)
        r = np.arange(P)
        cl, ch = lo[r, il], hi[r, ih]
        upl, uph = cl > L, ch < U
        L[upl], dgL[upl] = cl[upl], dg[r, il][upl]
        U[uph], dgU[uph] = ch[uph], dg[r, ih][uph]

    if P:
        has = np.isfinite(best_const)
        absorb(np.where(has, best_const - s_a, 0.0)[:, None], c_a[:, None], has[:, None])
    # pass 2: every moving competitor
    for r0 in range(0, m, block):
        if P == 0:
            break
        sl = slice(r0, min(m, r0 + block))
        S, G = block_scores(sl)
        ds = S[pair_row] - s_a[:, None]
        dg = c_a[:, None] - G[pair_row]
        notself = movers.ids[sl][None, :] != pair_id[:, None]
        absorb(ds, dg, notself)
    clamp = L <= 0
    L = np.where(clamp, 0.0, L)
    dgL = np.where(clamp, np.nan, dgL)
    valid = ~bad & (U >= L)
    dt = np.float64 if qv.dtype == np.float64 else np.float32
    return {"L": L[valid], "U": U[valid], "shiftL": _shifted(dgL[valid], dt) & (L[valid] > 0),
            "shiftU": _shifted(dgU[valid], dt)}


def m_parity_sweep(iv: dict[str, np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
    """The reference's point of most intersection: sweep the endpoints in order (starts before
    ends at equal keys), and after each group of equal keys compare the running count with the
    best so far (strict >). Returns (γ*, the distinct endpoint values, the count after each)."""
    L, U = iv["L"], iv["U"]
    if L.size == 0:
        return 0.0, np.zeros(1), np.zeros(1)
    # sort keys: (value, shift) with shift -1 for an L pushed down, +1 for a U pushed up
    fin = np.isfinite(U)
    vals = np.concatenate([L, U[fin]])
    shift = np.concatenate([np.where(iv["shiftL"], -1, 0), np.where(iv["shiftU"][fin], 1, 0)])
    sign = np.concatenate([np.ones(L.size, np.int64), -np.ones(int(fin.sum()), np.int64)])
    order = np.lexsort((shift, vals))
    v, sh, sg = vals[order], shift[order], sign[order]
    run = np.cumsum(sg)
    last = np.ones(v.size, dtype=bool)
    last[:-1] = (v[1:] != v[:-1]) | (sh[1:] != sh[:-1])
    gv, gc = v[last], run[last]
    best = gc.max()
    g = float(gv[np.argmax(gc == best)]) if best > 0 else 0.0
    return g, gv, gc.astype(np.float64)


def m_parity_count(iv: dict[str, np.ndarray], gamma: float) -> float:
    """Number of pairs counted at γ by the sweep: L <= γ, and γ < U (γ <= U when the reference's
    float32 +1e-8 pushes that U up, see above)."""
    L, U = iv["L"], iv["U"]
    ended = np.where(iv["shiftU"], U < gamma, U <= gamma)
    return float(np.count_nonzero((L <= gamma) & ~ended))
