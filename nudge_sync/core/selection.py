"""Safe selection among NUDGE variants (internal): a variant replaces plain NUDGE-N only when its
validation gain exceeds what the validation set's own noise could produce.

The margin is a paired bootstrap over validation queries: resample the queries with replacement,
recompute the mean per-query difference (variant - plain), and take how far the observed mean sits
above the lower ``SELECT_QUANTILE / n_variants`` quantile of those means (one-sided, split over the
variants compared: the best of several is picked, so each must clear a stricter bound). A variant
wins when its gain exceeds that margin, i.e. when the bootstrap lower bound of its gain is > 0.
Deterministic (fixed seed): the same inputs always choose the same variant.
"""

from __future__ import annotations

import numpy as np

#: One-sided level of the bootstrap lower bound, before the split over the variants compared.
SELECT_QUANTILE = 0.05
#: Bootstrap resamples (each a mean over the validation queries).
N_BOOT = 2000
_SEED = 20_260_521
_CHUNK = 1 << 22  # resampled indices drawn at once


def bootstrap_margin(base: np.ndarray, cand: np.ndarray, n_compared: int = 1) -> tuple[float, float]:
    """(gain, margin) of ``cand`` over ``base`` (per-query values, aligned): gain = the mean
    difference, margin = gain minus the bootstrap lower bound of the mean difference."""
    d = np.asarray(cand, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    n = d.size
    if n == 0:
        return 0.0, np.inf
    gain = float(d.mean())
    if not np.any(d != d[0]):  # every query gained the same: no noise to measure
        return gain, 0.0
    rng = np.random.default_rng(_SEED)
    means = np.empty(N_BOOT)
    per = max(1, _CHUNK // n)
    for b0 in range(0, N_BOOT, per):
        b1 = min(N_BOOT, b0 + per)
        means[b0:b1] = d[rng.integers(0, n, size=(b1 - b0, n))].mean(axis=1)
    q = SELECT_QUANTILE / max(1, int(n_compared))
    return gain, gain - float(np.quantile(means, q))


def choose(base: np.ndarray, cands: dict, n_compared: int | None = None) -> tuple[object | None, float, float]:
    """(key of the winning candidate or None, its gain, its margin): the candidate with the best
    mean (ties: the first), kept only if its gain exceeds its margin. ``cands``: key -> per-query
    values aligned with ``base``."""
    if not cands:
        return None, 0.0, 0.0
    keys = list(cands)
    means = np.array([float(np.mean(cands[k])) if np.size(cands[k]) else -np.inf for k in keys])
    best = keys[int(np.flatnonzero(np.round(means, 12) == np.round(means, 12).max())[0])]
    gain, margin = bootstrap_margin(base, cands[best], n_compared or len(keys))
    return (best if gain > margin and gain > 0 else None), gain, margin
