"""Validation metrics of groups of scored candidates from the ranks of their answers (internal).

A metric with cut-off k (ndcg, recall, hit, mrr) only depends on the rank of each answer that
reaches the top k, under the shared tie rule (score desc, id asc; elements lie in id order in
their group, so the position breaks ties). Instead of ranking whole groups, each group's k
largest scores are found by a partition, and an answer's rank is the number of those above it;
only an answer whose score another element of its group shares is ranked against the whole row.
"""

from __future__ import annotations

import numpy as np

from .ragged import RaggedGroups, top_of_blocks


def locate(groups: RaggedGroups, ans: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per block of ``groups``: (index into ``ans``, row, column) of the answers laid out there."""
    blk, row, col = (w[ans] for w in groups.where)
    out = []
    for b in range(len(groups.blocks)):
        sel = np.flatnonzero(blk == b)
        out.append((sel, row[sel], col[sel]))
    return out


def answer_ranks(padded: list[np.ndarray], where: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_ans: int,
                 k: int) -> np.ndarray:
    """Rank (0-based, capped at k) of every answer among all elements of its group, from the
    groups' scores in padded blocks and the answers' places there (:func:`locate`)."""
    rank = np.full(n_ans, k, dtype=np.int64)
    for v, top, (sel, r, c) in zip(padded, top_of_blocks(padded, k + 1), where):
        if sel.size == 0:
            continue
        sa = v[r, c]
        t = top[r]
        kth = t[:, k - 1] if t.shape[1] >= k else np.full(sel.size, -np.inf)
        nxt = t[:, k] if t.shape[1] > k else np.full(sel.size, -np.inf)
        greater = np.count_nonzero(t > sa[:, None], axis=1)
        equal = np.count_nonzero(t == sa[:, None], axis=1)
        rank[sel] = np.minimum(greater, k)  # exact unless another element shares the score
        # a tie listed, or one that may continue past the list: rank against the whole row
        tied = np.flatnonzero((sa >= kth) & ((equal > 1) | ((sa == kth) & (nxt == kth))))
        if tied.size:
            vr = v[r[tied]]
            s = sa[tied][:, None]
            cols = np.arange(vr.shape[1])[None, :]
            before = (vr > s) | ((vr == s) & (cols < c[tied][:, None]))
            rank[sel[tied]] = np.minimum(np.count_nonzero(before, axis=1), k)
    return rank


def metric_from_ranks(name: str, k: int, rank: np.ndarray, ans_group: np.ndarray, weight: np.ndarray | None,
                      n_groups: int) -> np.ndarray:
    """Per group: ndcg / recall as Σ weight x gain(rank) over its answers (weight = grade / ideal
    DCG, or 1 / min(answers, k)); hit / mrr from its best-ranked answer (that first answer's rank
    among all elements is its rank among non-answers)."""
    r = rank.astype(np.float64)
    if name in ("hit", "mrr"):
        best = np.full(n_groups, np.inf)
        np.minimum.at(best, ans_group, r)
        if name == "hit":
            return (best < k).astype(np.float64)
        return np.where(best < k, 1.0 / (best + 1.0), 0.0)
    gain = (r < k).astype(np.float64) if name == "recall" else np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)
    return np.bincount(ans_group, weights=weight * gain, minlength=n_groups)
