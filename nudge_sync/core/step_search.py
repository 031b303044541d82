"""NUDGE-N's search with per-record steps (internal): plain NUDGE-N's fine / exact γ search and
each α's grid search on one shared table (:mod:`.steps`), then the safe choice between them
(:mod:`.selection`). Called by :meth:`nudge_sync.core.nudge.NudgeN._search`.
"""

from __future__ import annotations

import numpy as np

from . import gamma as gm
from . import candidates as cand
from . import selection, steps
from .candidates import Movers
from .curve import TableScorer
from .gamma_search import choose_gamma


def search_steps(est, qv: np.ndarray, movers: Movers, c_ids: np.ndarray, c_s: np.ndarray, val, obj: gm.Objective,
                 name: str, t_hi: float, grid, auto: bool) -> None:
    """Fit ``est`` (a NudgeN in fine / exact mode): ``auto`` chooses between plain NUDGE-N and
    every α of STEP_ALPHAS; else its fixed ``step_alpha_`` (> 0) at the given or searched γ."""
    ls = steps.log_scales(est._geo["n_train"])
    alphas = steps.STEP_ALPHAS if auto else (est.step_alpha_,)
    C = steps.build_table(qv, movers, ls, alphas, c_ids, c_s, val, obj.k, t_hi)
    scorer = TableScorer(C, obj.name, obj.k)
    scaled = steps.ScaledScorer(C, obj.name, obj.k, movers, ls)
    n = max(C.n_val, 1)
    if est._user_gamma is not None:  # fixed γ and α: only report the objective there
        gam = est._user_gamma
        after = float(scaled.scaled_values(gam, est.step_alpha_).sum() / n)
        est._finish(gam, np.array([gam]), np.array([after]), scorer.value_at(0.0), after, name)
        return
    g_hi = float(gm.phi_to_gamma(t_hi))
    if not auto:
        srch = steps.AlphaSearch(scaled, alphas[0], g_hi).refine()
        gam, after = srch.best()
        est._finish(gam, srch.pts, srch.vals, float(srch.vals[0]), after, name)
        return
    # every α on the coarse grid, then only the best one refined (the selection looks at it alone)
    coarse = [steps.AlphaSearch(scaled, a, g_hi) for a in alphas]
    srch = coarse[int(np.argmax([round(c.best()[1], 12) for c in coarse]))].refine()
    # plain NUDGE-N exactly as fine / exact mode finds it, on its own (tighter) table: its exact
    # curve on the shared table costs several times more (wider bounds keep more elements)
    C0 = cand.build_candidates("n", qv, movers, c_ids, c_s, val, obj.k, t_hi)
    scorer0 = TableScorer(C0, obj.name, obj.k)
    gam0, gammas0, curve0, extra = choose_gamma(C0, obj, scorer0, est.gamma_search, grid)
    before = extra.pop("before")
    base = scorer0.row_values(C0.point_of_gamma(gam0))
    gam, after = srch.best()
    pick, gain, margin = selection.choose(base, {srch.alpha: srch.rows[gam]}, n_compared=len(alphas))
    est.selection_gain_, est.selection_margin_ = gain, margin
    est.variant_scores_ = {0.0: float(base.sum() / n), **{c.alpha: c.best()[1] for c in coarse}}
    if pick is None:
        after0 = float(curve0[np.flatnonzero(gammas0 == gam0)[0]]) if np.any(gammas0 == gam0) else scorer0.value_at(gam0)
        est._finish(gam0, gammas0, curve0, before, after0, name, extra)
        return
    est.variant_, est.step_alpha_ = "count-steps", float(pick)
    est._finish(gam, srch.pts, srch.vals, before, after, name)
