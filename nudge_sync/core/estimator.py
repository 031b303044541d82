"""What NUDGE-N and NUDGE-M share (internal): argument checks, the per-record geometry (G, Ĝ,
angles), the validation context and the top constants of the γ search, and the moved vectors'
bookkeeping. The two families (:mod:`nudge_sync.core.nudge`) add their closed form and γ search.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import candidates as cand
from .answers import Answers, as_answers
from .checks import check_base_ids, check_gamma, check_matrix, check_scalar, lookup_rows
from .context import ValidationContext
from .metrics import canonical_metric, merge_topk, normalize_rows, parse_metric, stream_topk
from .m_parity import rounded_topk

#: σ² below this fraction of ‖G‖² means G is parallel to v: the record does not move (H1).
_PARALLEL_EPS = 1e-14
#: Rows processed at once when building G and the per-record geometry.
REC_BLOCK = 1024


class NudgeBase:
    """Fit, γ bookkeeping and transform shared by :class:`~nudge_sync.core.nudge.NudgeN` and
    :class:`~nudge_sync.core.nudge.NudgeM`; the subclasses set ``_family`` and the γ search."""

    _family = ""

    # -- parameters ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.gamma_search not in ("parity", "fine", "exact"):
            raise ValueError(f"gamma_search must be 'parity', 'fine' or 'exact', got {self.gamma_search!r}")
        parse_metric(self.objective)
        if self.gamma is not None:
            self._user_gamma = check_gamma(self.gamma, self._family)
        else:
            self._user_gamma = None
        if self.gamma_max is not None:
            gmax = check_scalar(self.gamma_max, "gamma_max")
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
        base = check_matrix(base_vectors, "base_vectors")
        n, d = base.shape
        tq = check_matrix(train_queries, "train_queries", d=d)
        ids = check_base_ids(base_ids, n)
        train = as_answers(train_answers, "train_answers")
        if len(train) != tq.shape[0]:
            raise ValueError(f"train_answers has {len(train)} rows but train_queries has {tq.shape[0]}")
        has_val = val_queries is not None or val_answers is not None
        if has_val and (val_queries is None or val_answers is None):
            raise ValueError("give both val_queries and val_answers, or neither")
        dtypes = [base.dtype, tq.dtype]
        if has_val:
            vq = check_matrix(val_queries, "val_queries", d=d)
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
        rec_rows = lookup_rows(ids, order_ids, train.ids, "train_answers", "base_ids")
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
        for b0 in range(0, m, REC_BLOCK):
            b1 = min(m, b0 + REC_BLOCK)
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
            "n_train": np.diff(bounds)[ok],  # training queries per moving record (per-record steps)
        }

    def _movers(self, active: np.ndarray) -> cand.Movers:
        g = self._geo
        jump = (g["rho_neg"] & bool(getattr(self, "skip_negative_rho", False))) if self._family == "n" else np.zeros(g["ids"].size, bool)
        rows = None if active.all() else np.flatnonzero(active)
        return cand.Movers(ids=g["ids"][active], v=g["v"], w=g["w"], cos_theta=g["cos_theta"][active],
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
    for b0 in range(0, keep.size, REC_BLOCK):
        sl = keep[b0 : b0 + REC_BLOCK]
        x[b0 : b0 + sl.size] = x[sl]  # destinations never overtake the rows still to be read
    return x[: keep.size]


# -- input checks ----------------------------------------------------------------------------------
