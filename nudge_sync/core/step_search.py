"""NUDGE-N's search with per-record steps (internal). Under ``step_alpha="auto"``: plain NUDGE-N's
table and the α > 0 table (:mod:`.steps`) from the same products; plain NUDGE-N's scored points;
each α's grid search; the safe choice between the best α and plain NUDGE-N's best point
(:mod:`.selection`); plain NUDGE-N's exact windows (fine / exact mode) only when it is kept.
Called by :meth:`nudge_sync.core.nudge.NudgeN._search`.
"""

from __future__ import annotations

import numpy as np

from . import gamma as gm
from . import candidates as cand
from . import selection, steps
from .candidates import Movers
from .curve import TableScorer
from . import gamma_search as gsearch
from .gamma_search import choose_gamma


def search_steps(est, qv: np.ndarray, movers: Movers, c_ids: np.ndarray, c_s: np.ndarray, val, obj: gm.Objective,
                 name: str, t_hi: float, grid, auto: bool) -> None:
    """Fit ``est`` (a NudgeN in fine / exact mode): ``auto`` chooses between plain NUDGE-N and
    every α of STEP_ALPHAS; else its fixed ``step_alpha_`` (> 0) at the given or searched γ."""
    ls = steps.log_scales(est._geo["n_train"])
    alphas = steps.STEP_ALPHAS if auto else (est.step_alpha_,)
    n = max(qv.shape[0], 1)
    g_hi = float(gm.phi_to_gamma(t_hi))
    if not auto:
        C = steps.build_table(qv, movers, ls, {alphas[0]: g_hi}, c_ids, c_s, val, obj.k)
        scaled = steps.ScaledScorer(C, obj.name, obj.k, movers, ls)
    if est._user_gamma is not None:  # fixed γ and α: only report the objective there
        gam = est._user_gamma
        after = float(scaled.scaled_values(gam, est.step_alpha_).sum() / n)
        est._finish(gam, np.array([gam]), np.array([after]), scaled.value_at(0.0), after, name)
        return
    if not auto:
        srch = steps.AlphaSearch(scaled, alphas[0], g_hi).refine()
        gam, after = srch.best()
        est._finish(gam, srch.pts, srch.vals, float(srch.vals[0]), after, name)
        return
    # plain NUDGE-N on its own (tight) table, and the α > 0 table (each α up to its own cap,
    # steps.alpha_caps: the table over the whole range keeps most (query, record) pairs on dense
    # labels and costs several fits) from the same products: they are most of either's cost.
    # Plain NUDGE-N's scored points first (fine mode's first stage): the selection's baseline is
    # its best one; its exact windows are computed only if it is kept.
    caps = steps.alpha_caps(ls, alphas, g_hi)
    st = steps.StepTable(qv, movers, ls, caps, c_s, obj.k)
    C0 = cand.build_candidates("n", qv, movers, c_ids, c_s, val, obj.k, t_hi, on_block=st.add_block)
    scorer0 = TableScorer(C0, obj.name, obj.k)
    pts = gsearch.scored_points(C0, t_hi, grid)
    rows0 = [scorer0.row_values(C0.point_of_t(np.float64(t))) for t in pts]
    pvals0 = np.array([r.sum() for r in rows0]) / n  # as gamma_search scores its points
    vals0 = np.round(pvals0, gm._ROUND)
    b0 = int(np.flatnonzero(vals0 == vals0.max())[0])  # ties: the smallest γ
    base = rows0[b0]
    C = st.table(c_ids, c_s, val)
    del st
    pick, gain, margin, srch = None, 0.0, float("inf"), None
    if C.n_val:
        scaled = steps.ScaledScorer(C, obj.name, obj.k, movers, ls)
        # every α on the coarse grid, then only the best one refined (the selection looks at it alone)
        coarse = [steps.AlphaSearch(scaled, a, caps[a], steps.CAP_HALVINGS) for a in alphas]
        srch = coarse[int(np.argmax([round(c.best()[1], 12) for c in coarse]))].refine()
        gam, after = srch.best()
        pick, gain, margin = selection.choose(base, {srch.alpha: srch.rows[gam]}, n_compared=len(alphas))
        est.variant_scores_ = {c.alpha: c.best()[1] for c in coarse}
    est.variant_scores_ = {0.0: float(base.sum() / n), **est.variant_scores_}
    est.selection_gain_, est.selection_margin_ = gain, margin
    if pick is None:  # plain NUDGE-N exactly as fine / exact mode finds it
        gam0, gammas0, curve0, extra = choose_gamma(C0, obj, scorer0, est.gamma_search, grid, pvals0)
        before = extra.pop("before")
        after0 = float(curve0[np.flatnonzero(gammas0 == gam0)[0]]) if np.any(gammas0 == gam0) else scorer0.value_at(gam0)
        est.variant_scores_[0.0] = after0
        est._finish(gam0, gammas0, curve0, before, after0, name, extra)
        return
    est.variant_, est.step_alpha_ = "count-steps", float(pick)
    # no exact curve at α > 0: its plateaus are the scored points (zero width)
    est._finish(gam, srch.pts, srch.vals, float(rows0[0].sum() / n), after, name,
                {"plateaus_": np.stack([srch.pts, srch.pts, srch.vals], axis=1)})
