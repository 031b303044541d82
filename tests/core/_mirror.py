"""Brute-force, dense numpy re-derivation of the reference NUDGE (nudge-ft 0.1.2) semantics.

Written from NUDGE.md §1 and a reading of the reference: O(n_val x N) dense matrices, one full
re-scoring per γ, no pruning, no closed-form shortcuts in the γ search. It is the oracle the
estimators are compared against. Ties in top-k are broken by (score desc, column asc) with the
nontrain columns after the data columns, which is what the estimators do with ids
``arange(N)`` for data rows and ``N + arange`` for nontrain rows.
"""

from __future__ import annotations

import numpy as np


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def g_sums(n, tq, tans):
    G = np.zeros((n, tq.shape[1]))
    for qi, row in enumerate(tans):
        for a in set(int(x) for x in row):
            G[a] += tq[qi]
    return G


def topk_cols(S, k):
    """Top-k column indices per row by (score desc, column asc)."""
    order = np.lexsort((np.broadcast_to(np.arange(S.shape[1]), S.shape), -S), axis=-1)
    return order[:, :k]


def n_solution(V, G, gamma, skip_negative_rho=True):
    """NUDGE-N vectors at γ (reference formulas, float64)."""
    if gamma == 0:
        return V.copy()
    gamma = np.float64(gamma)
    vTc = np.einsum("ij,ij->i", V, G)
    cTc = np.einsum("ij,ij->i", G, G)
    sig2 = cTc - vTc**2
    zero = (np.abs(sig2) <= 1e-12 * np.maximum(cTc, 1e-300)) | (cTc == 0)
    if skip_negative_rho:
        zero |= vTc < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = vTc + np.sqrt(gamma / (4 - gamma) * np.clip(sig2, 0, None))
        delta = gamma * (G - mu[:, None] * V) / (2 * (mu - vTc))[:, None]
    delta[zero] = 0
    new = V + delta
    Gh = unit(G)
    mask = np.einsum("ij,ij->i", V, Gh) >= 1 - gamma / 2
    mask &= cTc > 0
    return np.where(mask[:, None], Gh, new)


def recall_capped(S, val_ans, k):
    """mean over queries of (#answers in top k) / min(|A|, k), S already including all columns."""
    top = topk_cols(S, k)
    out = []
    for i, row in enumerate(val_ans):
        a = set(int(x) for x in row)
        out.append(len(a & set(top[i].tolist())) / min(len(a), k))
    return float(np.mean(out))


def ref_nudge_n(E, tq, tans, vq, vans, nontrain=None, val_k=1, gamma=None, skip_negative_rho=True):
    """Returns (vectors for all rows of E, chosen γ, accuracy per grid γ)."""
    V = unit(E)
    G = g_sums(len(E), np.asarray(tq, dtype=np.float64), tans)
    vq = np.asarray(vq, dtype=np.float64)
    extra = None
    if nontrain is not None and len(nontrain):
        St = vq @ unit(nontrain).T
        extra = -np.sort(-St, axis=1)[:, :val_k]
    grid = [gamma] if gamma is not None else [0.02 * x for x in range(25)]
    best, best_acc, accs = 0.0, -1.0, []
    for g in grid:
        X = n_solution(V, G, g, skip_negative_rho)
        S = vq @ X.T
        if extra is not None:
            S = np.concatenate([S, extra], axis=1)
        acc = recall_capped(S, vans, val_k)
        accs.append(acc)
        if acc > best_acc:
            best_acc, best = acc, g
    return n_solution(V, G, best, skip_negative_rho), best, np.array(accs)


def ref_m_intervals(E, tq, tans, vq, vans, nontrain=None, eps=1e-8, dtype=np.float32):
    """Per-pair intervals as the reference computes them: in ``dtype`` (float32 like torch on
    float32 inputs), with its Δs / (Δg + 1e-8) ratios."""
    V = unit(E)
    G = g_sums(len(E), np.asarray(tq, dtype=np.float64), tans)
    gs = unit(-G)  # the reference keeps -Ĝ and subtracts it
    vq = np.asarray(vq, dtype=dtype)
    S = vq @ V.astype(dtype).T
    Gm = vq @ gs.astype(dtype).T
    if nontrain is not None and len(nontrain):
        mx = (vq @ unit(nontrain).astype(dtype).T).max(axis=1, keepdims=True)
        S = np.concatenate([S, mx], axis=1)
        Gm = np.concatenate([Gm, np.zeros_like(mx)], axis=1)
    e = dtype(eps)
    lows, highs = [], []
    for qi, row in enumerate(vans):
        for a in row:
            dg = Gm[qi] - Gm[qi, a]
            ds = S[qi] - S[qi, a]
            with np.errstate(divide="ignore", invalid="ignore"):
                alphas = ds / (dg + e)
            low = max(np.max(np.where(dg > 0, alphas, dtype(0))), dtype(0))
            high = np.min(np.where(dg < 0, alphas, dtype(1.0 / eps)))
            if np.any((dg == 0) & (ds > 0)) or high < low:
                continue
            lows.append(low)
            highs.append(high)
    return V, gs, np.array(lows), np.array(highs)


def ref_sweep(mins, maxs):
    """The reference's point of most intersection (merge of sorted starts and ends)."""
    maxs, mins = np.sort(maxs), np.sort(mins)
    if len(mins) == 0:
        return 0.0
    vals, signs = [], []
    i = j = 0
    while i < len(maxs):
        if j == len(mins) or maxs[i] < mins[j]:
            vals.append(maxs[i]); signs.append(-1); i += 1
        else:
            vals.append(mins[j]); signs.append(1); j += 1
    cur, best, best_i, t = 0, 0, -1, 0
    while t < len(vals):
        v = vals[t]
        while t < len(vals) and vals[t] == v:
            cur += signs[t]; t += 1
        if cur > best:
            best, best_i = cur, t - 1
    return float(vals[best_i]) if best_i != -1 else 0.0


def ref_nudge_m(E, tq, tans, vq, vans, nontrain=None, gamma=None, eps=1e-8, dtype=np.float32):
    V, gs, lows, highs = ref_m_intervals(E, tq, tans, vq, vans, nontrain, eps, dtype)
    g = ref_sweep(lows, highs) if gamma is None else gamma
    return V - g * gs, g


def brute_rank(vq, X, k, extra_ids=None, extra_scores=None):
    """Top-k ids over rows of X (ids arange) plus optional constant (ids, scores) columns."""
    S = np.asarray(vq, dtype=np.float64) @ np.asarray(X, dtype=np.float64).T
    ids = np.broadcast_to(np.arange(X.shape[0]), S.shape)
    if extra_ids is not None:
        S = np.concatenate([S, extra_scores], axis=1)
        ids = np.concatenate([ids, extra_ids], axis=1)
    key = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    order = np.lexsort((key, -S), axis=-1)[:, :k]
    return np.take_along_axis(ids, order, axis=1)
