"""NUDGE-N and NUDGE-M estimators (pure numpy, no I/O).

NUDGE moves record vectors, not the model: every record that answers training queries is pushed
toward Ĝ, the direction of the sum G of those queries, by an amount set by one global γ chosen on
validation queries. See NUDGE.md for the derivation; the closed forms used here are:

* NUDGE-N (unit sphere, ‖Δ‖² <= γ):  x = (1-γ/2)·v + (√(γ(4-γ))/2)·u  with u the unit vector of
  span(v, G) orthogonal to v, i.e. v rotated toward Ĝ by φ = arccos(1-γ/2); x = Ĝ once φ reaches
  the angle θ between v and Ĝ (saturation). Optional reference rule: records with v·G < 0 stay.
* NUDGE-M (‖Δ‖ <= γ):  x = v + γ·Ĝ, not normalised (dot-product retrieval only).

γ search: ``gamma_search="parity"`` reproduces the reference nudge-ft 0.1.2 (NUDGE-N: the grid
0, 0.02, .., 0.48 scored by capped recall@val_k, smallest γ wins ties; NUDGE-M: the interval sweep
on per-pair validation hit@1, decided at ties as the reference decides, :mod:`.m_parity`).
``gamma_search="fine"`` (the default of the sync engine) optimises ``objective`` over a continuous
range: the objective scored on a grid, then exactly around the best points; ``"exact"`` computes
the exact curve over the whole range, a certified optimum at a few times the cost on dense labels
(see :mod:`.gamma_search`, :mod:`.curve` and :mod:`.gamma`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import candidates as cand
from . import gamma as gm
from .answers import Answers
from .curve import TableScorer
from .estimator import REC_BLOCK, NudgeBase
from .gamma_search import choose_gamma
from .metrics import canonical_metric, normalize_rows, parse_metric
from .steps import log_scales, step_gammas
from .step_search import search_steps
from .m_parity import binding_slope, m_parity_count, m_parity_intervals, m_parity_sweep

__all__ = ["NudgeN", "NudgeM", "M_FINE_GAMMA_MAX"]

#: NUDGE-N fine search: the range ends this far (in φ, radians) beyond the last saturation angle.
_N_SAT_MARGIN = 1e-6
#: NUDGE-M fine search range when gamma_max is not given.
M_FINE_GAMMA_MAX = 2.0


class NudgeN(NudgeBase):
    """NUDGE-N: records stay on the unit sphere; γ bounds the squared step ‖Δ‖² (0 <= γ <= 4).

    Parameters
    ----------
    gamma : fixed γ (validation then only reports the score there), or None to search it.
    gamma_search : "parity" (reference grid 0..0.48, capped recall@val_k, smallest γ on ties),
        "fine" (``objective`` over γ in [0, min(max θ, gamma_max)]: scored on a grid, then the
        exact curve around its best points) or "exact" (the exact curve over that whole range).
    objective : metric optimised in fine / exact mode ("hit@1", "ndcg@10", "recall@10", "mrr@10", ...).
        Parity mode always uses the reference criterion (see ``objective_``).
    val_k : k of the reference criterion in parity mode.
    skip_negative_rho : the reference leaves records with v·G < 0 in place (until saturation).
    normalize_queries : L2-normalise queries (the reference does not).
    grade_weighting : weight each training query's share of G by its grade.
    gamma_max : upper end of the fine search (default: the largest useful γ).
    step_alpha : per-record steps by label count, γ_i = γ·(n_i / median n)^α with n_i the
        training queries record i answers: 0 (default) is NUDGE-N exactly; a number fixes α (fine /
        exact mode); "auto" tries :data:`~nudge_sync.core.steps.STEP_ALPHAS` beside plain
        NUDGE-N and keeps a variant only when its validation gain exceeds the bootstrap margin
        of :mod:`~nudge_sync.core.selection`. It applies where γ is searched in fine / exact
        mode: parity mode and a given ``gamma`` are plain NUDGE-N.

    Learned besides the base class's: ``variant_`` ("nudge-n" or "count-steps"), ``step_alpha_``,
    ``selection_gain_`` / ``selection_margin_`` (validation gain of the best variant over plain
    NUDGE-N and the margin it had to exceed; NaN unless "auto" searched), ``variant_scores_``
    (α -> validation objective at its best γ).
    """

    _family = "n"
    _param_names = ("gamma", "gamma_search", "objective", "val_k", "skip_negative_rho",
                    "normalize_queries", "grade_weighting", "gamma_max", "step_alpha")

    def __init__(self, gamma=None, gamma_search="parity", objective="hit@1", val_k=1,
                 skip_negative_rho=True, normalize_queries=False, grade_weighting=False, gamma_max=None,
                 step_alpha=0.0):
        self.step_alpha = step_alpha
        self.gamma = gamma
        self.gamma_search = gamma_search
        self.objective = objective
        self.val_k = val_k
        self.skip_negative_rho = skip_negative_rho
        self.normalize_queries = normalize_queries
        self.grade_weighting = grade_weighting
        self.gamma_max = gamma_max

    def _check_params(self) -> None:
        super()._check_params()
        if isinstance(self.val_k, bool) or not isinstance(self.val_k, (int, np.integer)) or self.val_k < 1:
            raise ValueError(f"val_k must be an integer >= 1, got {self.val_k!r}")
        a = self.step_alpha
        if not (isinstance(a, str) and a == "auto"):
            if isinstance(a, (bool, str)) or not isinstance(a, (int, float, np.integer, np.floating)) \
                    or not (np.isfinite(a) and 0 <= a <= 4):
                raise ValueError(f"step_alpha must be 'auto' or a number in [0, 4], got {a!r}")
            if a != 0 and self.gamma_search == "parity":
                raise ValueError("step_alpha needs gamma_search='fine' or 'exact' (parity mode is the reference NUDGE-N)")

    def fit(self, *args, **kwargs):
        self._check_params()
        a = 0.0 if self.step_alpha == "auto" else float(self.step_alpha)
        self.variant_, self.step_alpha_ = ("nudge-n" if a == 0 else "count-steps"), a
        self.selection_gain_ = self.selection_margin_ = float("nan")
        self.variant_scores_ = {}
        return super().fit(*args, **kwargs)

    def _parity_name(self) -> str:
        return "hit@1" if self.val_k == 1 else f"recall@{int(self.val_k)}"

    def _search(self, base, ids, qv, val: Answers, ctx, wdt) -> None:
        g = self._geo
        theta = np.arccos(np.clip(g["cos_theta"], -1.0, 1.0))
        parity = self.gamma_search == "parity"
        if parity:
            obj = gm.Objective("recall", int(self.val_k))
            name = self._parity_name()
        else:
            name = canonical_metric(self.objective)
            obj = gm.Objective(*parse_metric(name))
        if self._user_gamma is not None:
            t_hi = float(gm.gamma_to_phi(self._user_gamma))
        elif parity:
            t_hi = float(gm.gamma_to_phi(gm.PARITY_GRID_N[-1]))
        else:
            # Up to the last saturation angle, plus a sliver so that "every record saturated"
            # is a piece of its own (nothing changes beyond it).
            t_top = min(float(theta.max()) + _N_SAT_MARGIN, np.pi) if theta.size else 0.0
            if self.gamma_max is not None:
                t_top = min(t_top, float(gm.gamma_to_phi(float(self.gamma_max))))
            t_hi = t_top
        # Every record that may move is scored as one, even one that stays put over [0, t_hi] (a
        # skip-rule record saturating beyond it: a flat curve): all their scores then come out of
        # the same products, so exact copies among them tie to the bit, as the tie rule needs.
        active = np.ones(theta.size, dtype=bool)
        self._check_context_depth(ctx, obj.k)
        c_ids, c_s = self._constants(base, ids, qv, ctx, g["rows"][active], obj.k)
        grid = gm.PARITY_GRID_N if obj.name == "recall" or (obj.name, obj.k) == ("hit", 1) else None
        auto = self.step_alpha == "auto" and self._user_gamma is None
        if not parity and (auto or self.step_alpha_ != 0):
            return search_steps(self, qv, self._movers(active), c_ids, c_s, val, obj, name, t_hi, grid, auto)
        C = cand.build_candidates("n", qv, self._movers(active), c_ids, c_s, val, obj.k, t_hi)
        scorer = TableScorer(C, obj.name, obj.k)
        extra: dict[str, Any] = {}
        if self._user_gamma is not None:
            gam = self._user_gamma
            gammas = np.array([gam])
            curve = np.array([scorer.value_at(gam)])
            before = scorer.value_at(0.0)
        elif parity:
            gammas = gm.PARITY_GRID_N.copy()
            curve = np.array([scorer.value_at(x) for x in gammas])
            gam = float(gammas[int(np.argmax(curve))])  # first maximum: strict >, smallest γ
            before = float(curve[0])
        else:
            # on the reference's own criterion (capped recall@k, for any val_k = k; hit@1 is
            # recall@1), scoring its grid too keeps the search from ever doing worse than parity
            gam, gammas, curve, extra = choose_gamma(C, obj, scorer, self.gamma_search, grid)
            before = extra.pop("before")
        after = float(curve[np.flatnonzero(gammas == gam)[0]]) if np.any(gammas == gam) else scorer.value_at(gam)
        self._finish(gam, gammas, curve, before, after, name, extra)

    def _vectors_at(self, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        g = self._geo
        if gamma <= 0 or g["ids"].size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, g["v"].shape[1]), dtype=np.float32)
        a = self.step_alpha_
        # per-record steps: γ_i per record (α = 0: the one shared γ, the reference's arithmetic)
        cphi, sphi = gm.n_point(gamma if a == 0 else step_gammas(gamma, a, log_scales(g["n_train"])))
        sat = g["cos_theta"] >= cphi  # the reference's test v·Ĝ >= 1 - γ/2
        jump = g["rho_neg"] & bool(self.skip_negative_rho)
        moves = sat | ~jump
        idx = np.flatnonzero(moves)
        vecs = np.empty((idx.size, g["v"].shape[1]), dtype=np.float32)
        for b0 in range(0, idx.size, REC_BLOCK):
            sl = idx[b0 : b0 + REC_BLOCK]
            v = g["v"][sl].astype(np.float64)
            ghat = g["w"][sl].astype(np.float64)
            # rotation toward Ĝ by φ: cos φ v + sin φ u with u = (Ĝ - cos θ v) / sin θ; an error
            # in u (small sin θ) is scaled by sin φ < sin θ, so x stays accurate.
            u = (ghat - g["cos_theta"][sl, None] * v) / g["sin_theta"][sl, None]
            cb, sb = (cphi, sphi) if cphi.ndim == 0 else (cphi[sl, None], sphi[sl, None])
            x = np.where(sat[sl, None], ghat, normalize_rows(cb * v + sb * u))
            vecs[b0 : b0 + sl.size] = x
        return g["ids"][idx], vecs


class NudgeM(NudgeBase):
    """NUDGE-M: x = v + γ·Ĝ for every record that answers a training query (not normalised:
    use dot-product retrieval).

    Parameters as :class:`NudgeN`; parity mode is the reference interval sweep on per-(query,
    answer) validation hit@1 (ties count as wins, smallest γ of the best count, 0 if none).
    Fine and exact mode search [0, gamma_max] (default :data:`M_FINE_GAMMA_MAX`).
    """

    _family = "m"
    _param_names = ("gamma", "gamma_search", "objective", "normalize_queries", "grade_weighting", "gamma_max")

    def __init__(self, gamma=None, gamma_search="parity", objective="hit@1", normalize_queries=False,
                 grade_weighting=False, gamma_max=None):
        self.gamma = gamma
        self.gamma_search = gamma_search
        self.objective = objective
        self.normalize_queries = normalize_queries
        self.grade_weighting = grade_weighting
        self.gamma_max = gamma_max

    def _parity_name(self) -> str:
        return "pair_hit@1"

    def _search(self, base, ids, qv, val: Answers, ctx, wdt) -> None:
        g = self._geo
        active = np.ones(g["ids"].size, dtype=bool)
        if self.gamma_search == "parity":
            self._check_context_depth(ctx, 1)
            c_ids, c_s = self._constants(base, ids, qv, ctx, g["rows"], 2, rounded=True)
            iv = self._parity_intervals(base, ids, qv, val, c_ids, c_s)
            P = max(1, val.ids.size)  # denominator: all validation pairs
            before = m_parity_count(iv, 0.0) / P
            if self._user_gamma is not None:
                gam = self._user_gamma
                gammas = np.array([gam])
                curve = np.array([m_parity_count(iv, gam) / P])
            else:
                gam, gammas, counts = m_parity_sweep(iv)
                curve = counts / P
            after = m_parity_count(iv, gam) / P
            self._binding_slope = binding_slope(iv, gam)  # for tests: γ's float32 sensitivity
            self._finish(gam, gammas, curve, before, after, "pair_hit@1")
            return
        name = canonical_metric(self.objective)
        obj = gm.Objective(*parse_metric(name))
        gmax = float(self.gamma_max) if self.gamma_max is not None else M_FINE_GAMMA_MAX
        t_hi = self._user_gamma if self._user_gamma is not None else gmax
        self._check_context_depth(ctx, obj.k)
        c_ids, c_s = self._constants(base, ids, qv, ctx, g["rows"], obj.k)
        C = cand.build_candidates("m", qv, self._movers(active), c_ids, c_s, val, obj.k, t_hi)
        scorer = TableScorer(C, obj.name, obj.k)
        extra: dict[str, Any] = {}
        if self._user_gamma is not None:
            gam = self._user_gamma
            gammas = np.array([gam])
            curve = np.array([scorer.value_at(gam)])
            before = scorer.value_at(0.0)
        else:
            gam, gammas, curve, extra = choose_gamma(C, obj, scorer, self.gamma_search)
            before = extra.pop("before")
        after = scorer.value_at(gam)
        self._finish(gam, gammas, curve, before, after, name, extra)

    def _parity_intervals(self, base, ids, qv, val: Answers, c_ids, c_s):
        g = self._geo
        movers = self._movers(np.ones(g["ids"].size, dtype=bool))
        prow = val.row_index()
        pid = val.ids
        s_a = np.full(pid.size, np.nan)
        # answers that move: their (s, c) are read from the same matrices as the competitors'
        order = np.argsort(movers.ids, kind="stable")
        sid = movers.ids[order]
        pmov = np.full(pid.size, -1, dtype=np.int64)
        if sid.size:
            mpos = np.minimum(np.searchsorted(sid, pid), sid.size - 1)
            is_m = sid[mpos] == pid
            pmov[is_m] = order[mpos[is_m]]
            s_a[is_m] = 0.0
        # answers among the top constants: the very score other pairs compete against
        in_c = (c_ids[prow] == pid[:, None]) & (pmov < 0)[:, None]
        hit_c = in_c.any(axis=1)
        s_a[hit_c] = c_s[prow[hit_c], np.argmax(in_c[hit_c], axis=1)]
        # other answers among the base records that never move: scored directly
        border = np.argsort(ids, kind="stable")
        bpos = np.minimum(np.searchsorted(ids[border], pid), ids.size - 1)
        in_base = (pmov < 0) & ~hit_c & (ids[border][bpos] == pid)
        if np.any(in_base):
            rows = border[bpos[in_base]]
            vb = normalize_rows(base[rows]).astype(qv.dtype).astype(np.float64)
            s_a[in_base] = np.einsum("ij,ij->i", qv[prow[in_base]].astype(np.float64), vb).astype(qv.dtype)
        # answers only in the context beyond its top: they can never be top-1
        ok = ~np.isnan(s_a)
        top1_is_a = c_ids[prow, 0] == pid
        best = np.where(top1_is_a, c_s[prow, 1], c_s[prow, 0])
        return m_parity_intervals(qv, movers, prow[ok], pmov[ok], s_a[ok], pid[ok], best[ok])

    def _vectors_at(self, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        g = self._geo
        if gamma <= 0 or g["ids"].size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, g["v"].shape[1]), dtype=np.float32)
        out = np.empty(g["v"].shape, dtype=np.float32)
        for b0 in range(0, out.shape[0], REC_BLOCK):
            sl = slice(b0, b0 + REC_BLOCK)
            out[sl] = g["v"][sl].astype(np.float64) + gamma * g["w"][sl].astype(np.float64)
        return g["ids"].copy(), out
