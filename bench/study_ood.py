"""Why NUDGE loses to no fine-tuning out of distribution on the dense shape, and whether anything
short of the test queries can see it coming (issue 21, goal 3).

    PYTHONPATH=. python -m bench.study_ood        # prints a markdown section (bench/results/quality.md)

On bench_quality's OOD split of the dense 3.6k shape (fit on training cluster 0; test queries by
nearest centre): (1) how much of cluster 1's relevant records the fit moves; (2) a proxy built from
the training queries alone: 2-means inside cluster 0's training queries, fit on sub-cluster a (its
validation queries: those nearest a's centre), score sub-cluster b's training queries. Test
queries are only scored, never used to choose.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.bench_core import load_shape, save_shape
from bench.bench_quality import _ndcg, ood_split


def _fit(X, train, val, **kw):
    from nudge_sync import NudgeN, ValidationContext

    (tq, ta), (vq, va) = train, val
    base = np.unique(ta.ids)
    ctx = ValidationContext.from_corpus(vq, X, 10, exclude=base)
    return NudgeN(gamma_search="fine", objective="ndcg@10", **kw).fit(X[base], tq, ta, vq, va, base_ids=base,
                                                                     val_context=ctx)


def _split_by(q, cent):
    q = q.astype(np.float64)
    return np.argmin((q * q).sum(1)[:, None] - 2 * q @ cent.T + (cent * cent).sum(1)[None, :], axis=1)


def _proxy(X, Xn, train, val, name: str, fits: dict) -> list[str]:
    from nudge_sync.synthetic import kmeans_labels

    (tq, ta), (vq, va) = train, val
    lab = kmeans_labels(tq, 2, seed=0)
    cent = np.stack([tq[lab == c].astype(np.float64).mean(0) for c in (0, 1)])
    ta_i, tb_i, v_i = np.flatnonzero(lab == 0), np.flatnonzero(lab == 1), np.flatnonzero(_split_by(vq, cent) == 0)
    qb, ab = tq[tb_i], ta.take(tb_i)
    b0 = _ndcg(qb, ab, Xn)
    out = [f"Proxy: 2-means inside {name} {tq.shape[0]} training queries: fit on a ({ta_i.size} queries, "
           f"{v_i.size} validation queries nearest a), score b's {tb_i.size} training queries.", "",
           "| fit on a | γ | α | a's validation NDCG@10 (gain) | b NDCG@10 | b no-FT |", "|---|---|---|---|---|---|"]
    for label, kw in fits.items():
        est = _fit(X, (tq[ta_i], ta.take(ta_i)), (vq[v_i], va.take(v_i)), **kw)
        out.append(f"| {label} | {est.gamma_:.4f} | {est.step_alpha_:g} | {100 * est.val_score_:.2f} "
                   f"({100 * (est.val_score_ - est.val_score_before_):+.2f}) | {_ndcg(qb, ab, est.transform(Xn)):.2f} | {b0:.2f} |")
    return out


def main() -> None:
    from nudge_sync import search_exact

    with tempfile.TemporaryDirectory() as tmp:
        save_shape("dense", Path(tmp))
        X, sp = load_shape(Path(tmp))
    Xn = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    train, val, tests, _ = ood_split(sp)
    out = ["## Out of distribution on the dense shape: a study (bench/study_ood.py)", ""]
    fits = {"today's fine mode": {"step_alpha": 0.0}, "new default (auto)": {"step_alpha": "auto"}}  # explicit
    # (1) cluster 1's answers that the fit moves
    q1, a1 = tests["test c1"]
    out += ["| fit on cluster 0 | γ | α | c1 answers moved | moved records in c1's top 10: before, after | "
            "c1 NDCG@10 | c1 NDCG@10 no-FT |", "|---|---|---|---|---|---|---|"]
    for label, kw in fits.items():
        est = _fit(X, train, val, **kw)
        moved = np.isin(a1.ids, est.moved_ids_).mean()
        Y = est.transform(Xn)
        share = [np.isin(search_exact(q1, Z, 10)[0], est.moved_ids_).mean() for Z in (Xn, Y)]
        out.append(f"| {label} | {est.gamma_:.4f} | {est.step_alpha_:g} | {100 * moved:.1f}% | "
                   f"{100 * share[0]:.1f}%, {100 * share[1]:.1f}% | {_ndcg(q1, a1, Y):.2f} | {_ndcg(q1, a1, Xn):.2f} |")
    # (2) the proxy, on the OOD split's training queries (cluster 0) and on the full split's
    for name, (tr, vl) in (("cluster 0's", (train, val)), ("the full split's", (sp["t"], sp["v"]))):
        out += ["", *_proxy(X, Xn, tr, vl, name, fits)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
