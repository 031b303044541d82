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
on per-pair validation hit@1, decided at ties as the reference decides, :mod:`._m_parity`).
``gamma_search="fine"`` (the default of the sync engine) optimises ``objective`` over a continuous
range: the objective scored on a grid, then exactly around the best points; ``"exact"`` computes
the exact curve over the whole range, a certified optimum at a few times the cost on dense labels
(see :mod:`._search`, :mod:`._curve` and :mod:`._gamma`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _gamma as gm
from ._answers import Answers, as_answers
from ._context import ValidationContext
from ._curve import TableScorer
from ._metrics import canonical_metric, merge_topk, normalize_rows, parse_metric, stream_topk
from ._m_parity import binding_slope, m_parity_count, m_parity_intervals, m_parity_sweep, rounded_topk
from ._search import choose_gamma

__all__ = ["NudgeN", "NudgeM"]

#: σ² below this fraction of ‖G‖² means G is parallel to v: the record does not move (H1).
_PARALLEL_EPS = 1e-14
#: Rows processed at once when building G and the per-record geometry.
_REC_BLOCK = 1024
#: NUDGE-N fine search: the range ends this far (in φ, radians) beyond the last saturation angle.
_N_SAT_MARGIN = 1e-6
#: NUDGE-M fine search range when gamma_max is not given.
M_FINE_GAMMA_MAX = 2.0


class _Nudge:
    _family = ""

    # -- parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.gamma_search not in ("parity", "fine", "exact"):
            raise ValueError(f"gamma_search must be 'parity', 'fine' or 'exact', got {self.gamma_search!r}")
        parse_metric(self.objective)
        if self.gamma is not None:
            self._user_gamma = _check_gamma(self.gamma, self._family)
        else:
            self._user_gamma = None
        if self.gamma_max is not None:
            gmax = _scalar(self.gamma_max, "gamma_max")
            if not (np.isfinite(gmax) and gmax > 0):
                raise ValueError(f"gamma_max must be a finite number > 0, got {self.gamma_max!r}")
            if self._family == "n" and gmax > 4:
                raise ValueError("gamma_max must be <= 4 for NUDGE-N (γ bounds the squared step on the unit sphere)")

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._param_names)
        return f"{type(self).__name__}({args})"

    # -- fit ----------------------------------------------------------------------------------------
    def fit(
        self,
        base_vectors: Any,
        train_queries: Any,
        train_answers: Any,
        val_queries: Any = None,
        val_answers: Any = None,
        *,
        base_ids: Any = None,
        val_context: ValidationContext | None = None,
    ):
        """Learn γ and the moved records.

        base_vectors : (n, d) candidate records; every record a training query answers must be
            among them (others may be too: they compete during validation). L2-normalised here.
        train_queries, train_answers : (n_t, d) queries (cast to float, not normalised unless
            ``normalize_queries``) and their answers as global ids (:class:`Answers` or lists).
        val_queries, val_answers : validation queries and answers (ids in ``base_ids`` or in
            ``val_context``); both or neither. Without them ``gamma`` must be given.
        base_ids : global int64 ids of the base rows (default ``arange(n)``), unique.
        val_context : top-k per validation query over the records outside ``base`` (they never
            move), e.g. :meth:`ValidationContext.from_corpus` with ``exclude`` or a database kNN.
            None means there are no records outside ``base``. Its depth must cover the metric's k
            unless it lists all such records.

        Learned: ``gamma_``; ``gammas_`` / ``validation_curve_`` (every γ evaluated and the
        objective there; fine / exact mode: the points scored directly and the middle of every
        computed piece of the exact curve, see also ``plateaus_`` = rows (γ start, γ end, value)
        covering the range, value NaN where the search proved the objective below the best or,
        in fine mode, did not look); ``objective_``
        (the criterion actually optimised); ``val_score_before_`` (γ = 0) and ``val_score_``;
        ``moved_ids_`` (sorted int64) with ``moved_vectors_`` (float32, aligned);
        ``n_train_dropped_`` / ``n_val_dropped_`` (queries without answers, ignored).
        """
        self._check_params()
        base = _matrix(base_vectors, "base_vectors")
        n, d = base.shape
        tq = _matrix(train_queries, "train_queries", d=d)
        ids = _base_ids(base_ids, n)
        train = as_answers(train_answers, "train_answers")
        if len(train) != tq.shape[0]:
            raise ValueError(f"train_answers has {len(train)} rows but train_queries has {tq.shape[0]}")
        has_val = val_queries is not None or val_answers is not None
        if has_val and (val_queries is None or val_answers is None):
            raise ValueError("give both val_queries and val_answers, or neither")
        dtypes = [base.dtype, tq.dtype]
        if has_val:
            vq = _matrix(val_queries, "val_queries", d=d)
            val = as_answers(val_answers, "val_answers")
            if len(val) != vq.shape[0]:
                raise ValueError(f"val_answers has {len(val)} rows but val_queries has {vq.shape[0]}")
            dtypes.append(vq.dtype)
        wdt = np.result_type(*dtypes, np.float32)
        if wdt not in (np.float32, np.float64):
            wdt = np.dtype(np.float64)

        # -- training side: G per answered record -----------------------------------------------------
        train, kept_t = train.drop_empty()
        self.n_train_dropped_ = int(tq.shape[0] - kept_t.size)
        if kept_t.size != tq.shape[0]:
            tq = tq[kept_t]
        order_ids = np.argsort(ids, kind="stable")
        rec_rows = _lookup(ids, order_ids, train.ids, "train_answers", "base_ids")
        geo = self._geometry(base, ids, tq, train, rec_rows, wdt)
        self._geo = geo
        try:
            self._fit_validation(base, ids, vq if has_val else None, val if has_val else None, val_context, wdt)
        finally:
            del self._geo  # (m, d) working arrays: not needed once the moved vectors exist
        return self

    def _objective_name(self) -> str:
        return self._parity_name() if self.gamma_search == "parity" else canonical_metric(self.objective)

    def _fit_validation(self, base, ids, vq, val, val_context, wdt) -> None:
        if vq is None:
            if self._user_gamma is None:
                raise ValueError("gamma must be given when there is no validation data to choose it")
            self.n_val_dropped_ = 0
            g = self._user_gamma
            self._finish(g, np.array([g]), np.array([np.nan]), np.nan, np.nan, self._objective_name())
            return
        val_kept, kept_v = val.drop_empty()
        self.n_val_dropped_ = int(len(val) - kept_v.size)
        ctx = None
        if val_context is not None:
            if not isinstance(val_context, ValidationContext):
                raise ValueError("val_context must be a ValidationContext")
            if len(val_context) != vq.shape[0]:
                raise ValueError(f"val_context has {len(val_context)} rows but val_queries has {vq.shape[0]}")
            ctx = val_context.take(kept_v)
            bad = np.isin(ctx.ids, self._geo["g_ids"]) & (ctx.ids >= 0)
            if bad.any():
                raise ValueError(
                    f"val_context contains record {int(ctx.ids[bad][0])}, which answers a training query and "
                    "may move; build the context over the records that do not move (exclude=...)")
        if kept_v.size == 0:
            if self._user_gamma is None:
                raise ValueError("no validation query has answers: cannot choose gamma (give gamma=...)")
            g = self._user_gamma
            self._finish(g, np.array([g]), np.array([np.nan]), np.nan, np.nan, self._objective_name())
            return
        qv = vq[kept_v].astype(np.float64)
        if self.normalize_queries:
            qv = normalize_rows(qv)
        self._search(base, ids, qv.astype(wdt), val_kept, ctx, wdt)

    # -- per-record geometry ---------------------------------------------------------------------------
    def _geometry(self, base, ids, tq, train: Answers, rec_rows, wdt) -> dict[str, np.ndarray]:
        """G for every answered record, then (N) θ, u / (M) Ĝ. Blockwise over records."""
        qrow = train.row_index()
        w = train.all_grades() if getattr(self, "grade_weighting", False) else np.ones(qrow.size)
        order = np.argsort(rec_rows, kind="stable")
        rr, qq, ww = rec_rows[order], qrow[order], w[order]
        uniq_rows, starts = np.unique(rr, return_index=True)
        bounds = np.append(starts, rr.size)
        m = uniq_rows.size
        d = base.shape[1]
        v_out = np.empty((m, d), dtype=wdt)
        w_out = np.empty((m, d), dtype=wdt)
        cos_t = np.zeros(m)
        sin_t = np.zeros(m)
        rho_neg = np.zeros(m, dtype=bool)
        ok = np.zeros(m, dtype=bool)  # G != 0 (and, for N, not parallel to v)
        # one float64 copy of the (few) training queries, gathered per pair below: converting
        # every gathered pair row instead costs twice the memory traffic
        tq64 = normalize_rows(tq) if self.normalize_queries else tq.astype(np.float64)
        weighted = bool(getattr(self, "grade_weighting", False))
        for b0 in range(0, m, _REC_BLOCK):
            b1 = min(m, b0 + _REC_BLOCK)
            p0, p1 = bounds[b0], bounds[b1]
            G = _sum_rows_by_record(tq64, qq, ww if weighted else None, bounds[b0 : b1 + 1])
            v = base[uniq_rows[b0:b1]].astype(np.float64)
            vn = np.linalg.norm(v, axis=1)
            zero = np.flatnonzero(vn == 0)
            if zero.size:
                raise ValueError(f"base_vectors row {uniq_rows[b0 + zero[0]]} (id {ids[uniq_rows[b0 + zero[0]]]}) "
                                 "has zero norm and answers a training query")
            v /= vn[:, None]
            cn = np.linalg.norm(G, axis=1)
            rho = np.einsum("ij,ij->i", v, G)
            r = G - rho[:, None] * v
            sig = np.linalg.norm(r, axis=1)  # computed from the residual: never NaN (H1)
            nz = cn > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                ghat = np.where(nz[:, None], G / np.where(nz, cn, 1.0)[:, None], 0.0)
                c = np.where(nz, np.clip(rho / np.where(nz, cn, 1.0), -1.0, 1.0), 1.0)
                s = np.where(nz, sig / np.where(nz, cn, 1.0), 0.0)
            v_out[b0:b1] = v
            rho_neg[b0:b1] = rho < 0
            # Ĝ is stored for both variants: a saturated NUDGE-N record becomes exactly Ĝ (records
            # with the same G coincide, as in the reference), and q·Ĝ is its exact score.
            w_out[b0:b1] = ghat
            if self._family == "n":
                ok[b0:b1] = nz & (sig * sig > _PARALLEL_EPS * cn * cn)  # parallel: x = Ĝ = v, no move
            else:
                ok[b0:b1] = nz
            cos_t[b0:b1] = c
            sin_t[b0:b1] = s
        rows = uniq_rows[ok]
        keep = np.flatnonzero(ok)
        return {
            "g_ids": ids[uniq_rows],  # every record that answers a training query
            "rows": rows,
            "ids": ids[rows],
            "v": _compact(v_out, keep),
            "w": _compact(w_out, keep),
            "cos_theta": cos_t[ok],
            "sin_theta": sin_t[ok],
            "rho_neg": rho_neg[ok],
        }

    def _movers(self, active: np.ndarray) -> gm.Movers:
        g = self._geo
        jump = (g["rho_neg"] & bool(getattr(self, "skip_negative_rho", False))) if self._family == "n" else np.zeros(g["ids"].size, bool)
        rows = None if active.all() else np.flatnonzero(active)
        return gm.Movers(ids=g["ids"][active], v=g["v"], w=g["w"], cos_theta=g["cos_theta"][active],
                         sin_theta=g["sin_theta"][active], jump=jump[active], rows=rows)

    def _constants(self, base, ids, qv, ctx, active_rows, K, rounded=False) -> tuple[np.ndarray, np.ndarray]:
        """Top-K per validation query over base records that never move, merged with the context.
        ``rounded``: scores formed as NUDGE-M parity needs them (:func:`_m_parity.rounded_topk`)."""
        exclude = ids[active_rows]
        if rounded:
            c_ids, c_s = rounded_topk(qv, base, K, ids, exclude=exclude)
        else:
            c_ids, c_s = stream_topk(qv, base, K, ids=ids, exclude=exclude, normalize=True)
        if ctx is not None:
            c_ids, c_s = merge_topk(c_ids, c_s, ctx.ids, ctx.scores, K, dedupe=True)
        return c_ids, c_s

    def _check_context_depth(self, ctx, k):
        if ctx is not None and ctx.k < k and np.any(ctx.ids[:, -1] >= 0):
            raise ValueError(f"val_context has k={ctx.k} columns but the γ search needs the top {k} "
                             "non-moving records per validation query")

    def _finish(self, gamma, gammas, curve, before, after, objective, extra=None):
        self.gamma_ = float(gamma)
        self.gammas_ = np.asarray(gammas, dtype=np.float64)
        self.validation_curve_ = np.asarray(curve, dtype=np.float64)
        self.val_score_before_ = float(before)
        self.val_score_ = float(after)
        self.objective_ = objective
        self.moved_ids_, self.moved_vectors_ = self._vectors_at(self.gamma_)
        if np.any(np.diff(self.moved_ids_) < 0):
            order = np.argsort(self.moved_ids_, kind="stable")
            self.moved_ids_ = self.moved_ids_[order]
            self.moved_vectors_ = self.moved_vectors_[order]
        if extra:
            for k, v in extra.items():
                setattr(self, k, v)

    # -- transform ----------------------------------------------------------------------------------
    def transform(self, vectors: Any, ids: Any = None) -> np.ndarray:
        """Copy of ``vectors`` (rows with global ``ids``, default arange) with moved rows replaced."""
        if not hasattr(self, "moved_ids_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise ValueError(f"vectors must be 2-d (n, d), got shape {x.shape}")
        if self.moved_vectors_.shape[0] and x.shape[1] != self.moved_vectors_.shape[1]:
            raise ValueError(f"vectors have dimension {x.shape[1]} but the fit used {self.moved_vectors_.shape[1]}")
        out = np.array(x, dtype=np.result_type(x.dtype, np.float32), copy=True)
        ids = np.arange(x.shape[0], dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size != x.shape[0]:
            raise ValueError(f"ids has {ids.size} entries but vectors has {x.shape[0]} rows")
        if self.moved_ids_.size:
            pos = np.searchsorted(self.moved_ids_, ids)
            pos = np.minimum(pos, self.moved_ids_.size - 1)
            hit = self.moved_ids_[pos] == ids
            out[hit] = self.moved_vectors_[pos[hit]]
        return out


class NudgeN(_Nudge):
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
    """

    _family = "n"
    _param_names = ("gamma", "gamma_search", "objective", "val_k", "skip_negative_rho",
                    "normalize_queries", "grade_weighting", "gamma_max")

    def __init__(self, gamma=None, gamma_search="parity", objective="hit@1", val_k=1,
                 skip_negative_rho=True, normalize_queries=False, grade_weighting=False, gamma_max=None):
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

    def _parity_name(self) -> str:
        return "hit@1" if self.val_k == 1 else f"recall@{int(self.val_k)}"

    def _search(self, base, ids, qv, val: Answers, ctx, wdt) -> None:
        g = self._geo
        theta = np.arccos(np.clip(g["cos_theta"], -1.0, 1.0))
        jump = g["rho_neg"] & bool(self.skip_negative_rho)
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
        C = gm.build_candidates("n", qv, self._movers(active), c_ids, c_s, val, obj.k, t_hi)
        self._candidates = C
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
            grid = gm.PARITY_GRID_N if obj.name == "recall" or (obj.name, obj.k) == ("hit", 1) else None
            gam, gammas, curve, extra = choose_gamma(C, obj, scorer, self.gamma_search, grid)
            before = extra.pop("before")
        after = float(curve[np.flatnonzero(gammas == gam)[0]]) if np.any(gammas == gam) else scorer.value_at(gam)
        self._finish(gam, gammas, curve, before, after, name, extra)

    def _vectors_at(self, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        g = self._geo
        if gamma <= 0 or g["ids"].size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, g["v"].shape[1]), dtype=np.float32)
        cphi, sphi = gm.n_point(gamma)
        sat = g["cos_theta"] >= cphi  # the reference's test v·Ĝ >= 1 - γ/2
        jump = g["rho_neg"] & bool(self.skip_negative_rho)
        moves = sat | ~jump
        idx = np.flatnonzero(moves)
        vecs = np.empty((idx.size, g["v"].shape[1]), dtype=np.float32)
        for b0 in range(0, idx.size, _REC_BLOCK):
            sl = idx[b0 : b0 + _REC_BLOCK]
            v = g["v"][sl].astype(np.float64)
            ghat = g["w"][sl].astype(np.float64)
            # rotation toward Ĝ by φ: cos φ v + sin φ u with u = (Ĝ - cos θ v) / sin θ; an error
            # in u (small sin θ) is scaled by sin φ < sin θ, so x stays accurate.
            u = (ghat - g["cos_theta"][sl, None] * v) / g["sin_theta"][sl, None]
            x = np.where(sat[sl, None], ghat, normalize_rows(cphi * v + sphi * u))
            vecs[b0 : b0 + sl.size] = x
        return g["ids"][idx], vecs


class NudgeM(_Nudge):
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
        C = gm.build_candidates("m", qv, self._movers(active), c_ids, c_s, val, obj.k, t_hi)
        self._candidates = C
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
        for b0 in range(0, out.shape[0], _REC_BLOCK):
            sl = slice(b0, b0 + _REC_BLOCK)
            out[sl] = g["v"][sl].astype(np.float64) + gamma * g["w"][sl].astype(np.float64)
        return g["ids"].copy(), out


# -- fine-mode choice ------------------------------------------------------------------------------


#: Pair rows gathered at once when summing G: small enough for the gathered block to stay in cache
#: (4x faster than one gather per record block on the dense shape).
_PAIR_BLOCK = 1024


def _sum_rows_by_record(q: np.ndarray, rows: np.ndarray, weights: np.ndarray | None, bounds: np.ndarray) -> np.ndarray:
    """G for consecutive records: record i sums (weighted) rows ``q[rows[bounds[i]:bounds[i+1]]]``
    (``bounds`` non-decreasing; every record has at least one row)."""
    n = bounds.size - 1
    out = np.empty((n, q.shape[1]))
    i = 0
    while i < n:
        j = int(np.searchsorted(bounds, bounds[i] + _PAIR_BLOCK, side="right")) - 1
        j = min(n, max(j, i + 1))
        p0, p1 = bounds[i], bounds[j]
        block = q[rows[p0:p1]]
        if weights is not None:
            block *= weights[p0:p1, None]
        out[i:j] = np.add.reduceat(block, bounds[i:j] - p0, axis=0)
        i = j
    return out


def _compact(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``x[keep]`` for sorted ``keep``, moved in place block by block (no full-size copy)."""
    if keep.size == x.shape[0]:
        return x
    for b0 in range(0, keep.size, _REC_BLOCK):
        sl = keep[b0 : b0 + _REC_BLOCK]
        x[b0 : b0 + sl.size] = x[sl]  # destinations never overtake the rows still to be read
    return x[: keep.size]


# -- input checks ----------------------------------------------------------------------------------


def _scalar(x: Any, name: str) -> float:
    if isinstance(x, (list, tuple, np.ndarray)):
        arr = np.asarray(x, dtype=object).reshape(-1)
        if arr.size != 1:
            raise ValueError(f"{name} must be a single number, got {x!r}")
        x = arr[0]
    if isinstance(x, bool):
        raise ValueError(f"{name} must be a number, got {x!r}")
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None


def _check_gamma(gamma: Any, family: str) -> float:
    g = _scalar(gamma, "gamma")
    if not (np.isfinite(g) and g >= 0):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if family == "n" and g > 4:
        raise ValueError(f"gamma must be <= 4 for NUDGE-N (γ bounds the squared step on the unit sphere), got {g}")
    return g


def _matrix(x: Any, name: str, d: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists etc.
        raise ValueError(f"{name} must be a 2-d numeric array: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-d (n, d), got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has dimension {arr.shape[1]} but base_vectors has {d}")
    for r0 in range(0, arr.shape[0], 65536):
        blk = arr[r0 : r0 + 65536]
        fin = np.isfinite(blk).all(axis=1)
        if not fin.all():
            raise ValueError(f"{name} contains non-finite values (first bad row {r0 + int(np.argmin(fin))})")
    return arr


def _base_ids(base_ids: Any, n: int) -> np.ndarray:
    if base_ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(base_ids).reshape(-1)
    if ids.size != n:
        raise ValueError(f"base_ids has {ids.size} entries but base_vectors has {n} rows")
    if ids.size and ids.dtype.kind not in "iu":
        raise ValueError(f"base_ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if np.any(ids < 0):
        raise ValueError(f"base_ids must be non-negative, got {ids[np.argmax(ids < 0)]}")
    s = np.sort(ids)
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size:
        raise ValueError(f"base_ids must be unique; {s[dup[0]]} appears more than once")
    return ids


def _lookup(ids: np.ndarray, order: np.ndarray, wanted: np.ndarray, what: str, where: str) -> np.ndarray:
    """Row of each wanted id in ``ids`` (``order`` = argsort(ids)); clear error when missing."""
    if wanted.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.size == 0:
        raise ValueError(f"{what} refers to record {int(wanted[0])}, which is not in {where}")
    sid = ids[order]
    pos = np.minimum(np.searchsorted(sid, wanted), sid.size - 1)
    miss = sid[pos] != wanted
    if miss.any():
        raise ValueError(f"{what} refers to record {int(wanted[np.argmax(miss)])}, which is not in {where} "
                         "(every record a training query answers must be among the base vectors)")
    return order[pos]
