"""The γ in force stays unless a new one is clearly better: what makes a search-mode run idempotent
on a database whose kNN is approximate (issue 20, item 0).

In ``search`` mode the validation context is the database's own kNN among the records that do not
move. On an HNSW index (Chroma always; Qdrant and Milvus servers by default) that answer depends
on the graph, and the graph changes when a run rewrites the moving records: the next run sees a
slightly different context, its γ search lands a little elsewhere, and every nudged record is
rewritten for nothing (1M x 64 Chroma: 4,200 vectors, run after run). The targets of a run depend
only on the originals, the training queries and γ, so keeping the γ the stored vectors were
written with is enough to make a repeated run write nothing.

So the newly chosen γ replaces the one in force only when it beats it, both scored on this run's
own validation context, by more than ``gamma_margin``. Exact mode needs none of this (its context
is the stored non-moving records themselves, which a run never changes) and is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from .options import SyncOptions, SyncReport

__all__ = ["gamma_in_force", "keep_gamma_in_force"]

#: Run statuses whose γ the stored nudged vectors carry (a partial run wrote some of its targets).
_IN_FORCE = ("written", "unchanged", "partial")
#: γ values this close (relative) are one γ: an exact kNN's float32 scores still move the ends of
#: γ's plateau by ~1e-8 between runs (Qdrant local), and NUDGE-N's targets move by about
#: Δγ / (2 sqrt γ), far below the write tolerance.
_SAME_GAMMA = 1e-7


class _Fitted(Protocol):
    gamma_: float
    val_score_: float
    objective_: str
    gammas_: np.ndarray
    validation_curve_: np.ndarray


def gamma_in_force(runs: Sequence[dict[str, Any]], method: str) -> float | None:
    """The γ the nudged vectors in the database were written with: that of the newest run that
    wrote (or found everything already written), if it used ``method``. None when there is none,
    or when a rollback since then put originals back (a run after a rollback starts afresh)."""
    for run in reversed(runs):
        if "method" not in run:  # a rollback's record
            if run.get("status") == "rolled-back":
                return None
            continue
        if run.get("status") in _IN_FORCE:
            gamma = run.get("gamma")
            ok = run.get("method") == method and isinstance(gamma, (int, float)) and np.isfinite(gamma)
            return float(gamma) if ok else None
    return None


def keep_gamma_in_force(est: _Fitted, refit: Callable[[float], _Fitted], runs: Callable[[], Sequence[dict[str, Any]]],
                        opts: SyncOptions, report: SyncReport) -> _Fitted:
    """``est`` (this run's fit), or ``refit(γ in force)`` when the new γ does not beat the one in
    force by more than ``opts.gamma_margin`` on this run's validation context; a note says which
    and why. ``runs`` reads the state's run records (only when needed: search mode, γ chosen on
    validation)."""
    if opts.gamma is not None or report.context_mode != "search":
        return est
    previous = gamma_in_force(runs(), opts.method)
    if previous is None or math.isclose(previous, est.gamma_, rel_tol=_SAME_GAMMA, abs_tol=1e-12):
        return est
    kept = refit(previous)
    gain = float(est.val_score_) - float(kept.val_score_)
    scores = (f"{est.objective_} {kept.val_score_:.4f} at γ={previous:.6g} (last run) and {est.val_score_:.4f} "
              f"at γ={est.gamma_:.6g} (chosen now), on this run's validation context")
    if gain > opts.gamma_margin:
        report.notes.append(f"γ changed: {scores}; the gain {gain:+.4f} is above gamma_margin={opts.gamma_margin}")
        return est
    report.notes.append(f"kept the last run's γ={previous:.6g}: {scores}; the gain {gain:+.4f} is not above "
                        f"gamma_margin={opts.gamma_margin} (the database's approximate kNN moves the context "
                        "between runs: rewriting every nudged record for it would buy nothing)")
    # the report's curve stays the search's, with the kept point added
    kept.gammas_ = np.append(est.gammas_, previous)
    kept.validation_curve_ = np.append(est.validation_curve_, kept.val_score_)
    return kept
