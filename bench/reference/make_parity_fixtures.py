"""Generate the parity fixtures with the REAL reference implementation (nudge-ft 0.1.2, torch CPU).

Run once, in its own environment (never part of the test run; torch is not a dependency):

    python3 -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.13.0 nudge-ft==0.1.2
    /work/venv-ref/bin/python bench/reference/make_parity_fixtures.py

Each case stores its inputs, the reference's output embeddings and the gamma it chose, in
tests/core/fixtures/parity/<case>.npz, plus manifest.json. nudge-ft does not return gamma: it is
captured by wrapping the reference's own methods (NUDGE-M: the value returned by
``_get_point_of_most_intersection``; NUDGE-N: the gamma of the final ``_sol_maxm`` call, which is
the one whose output is returned).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import nudge
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # our generator makes the inputs
from nudge_sync.synthetic import make_corpus  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "core" / "fixtures" / "parity"
SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact-minilm.npz"


def captured_gamma(method: str, run):
    box: list[float] = []
    if method == "N":
        real = nudge.NUDGEN._sol_maxm

        def spy(self, gamma, *args):
            box.append(float(gamma))
            return real(self, gamma, *args)

        nudge.NUDGEN._sol_maxm = spy
    else:
        real = nudge.NUDGEM._get_point_of_most_intersection

        def spy(self, *args):
            g = real(self, *args)
            box.append(float(g))
            return g

        nudge.NUDGEM._get_point_of_most_intersection = spy
    try:
        out = run()
    finally:
        if method == "N":
            nudge.NUDGEN._sol_maxm = real
        else:
            nudge.NUDGEM._get_point_of_most_intersection = real
    return out, box[-1]


def problem(seed, n, d, n_queries, max_ans, with_nontrain=False, val_unrelated=False):
    """A small problem from nudge_sync.synthetic (queries with a real gap to their answers).

    with_nontrain: records no train/val query answers are passed as ``nontrain_embeddings``.
    val_unrelated: validation queries whose answers no training query has (best gamma is 0).
    """
    data = make_corpus(n_records=n, dim=d, n_queries=n_queries, seed=seed, max_answers=max_ans, n_topics=n // 10)
    tr, va = data.rows("train"), np.concatenate([data.rows("val"), data.rows("test")])
    ta, vans = [data.answers[q] for q in tr], [data.answers[q] for q in va]
    if val_unrelated:
        trained = {r for a in ta for r in a}
        keep = [j for j, a in enumerate(vans) if not set(a) & trained]
        va, vans = va[keep], [vans[j] for j in keep]
    X = data.vectors
    nt = None
    if with_nontrain:
        used = sorted({r for a in ta + vans for r in a})
        rest = np.setdiff1d(np.arange(n), used)
        remap = {r: j for j, r in enumerate(used)}
        nt = X[rest]
        X = X[used]
        ta = [[remap[r] for r in a] for a in ta]
        vans = [[remap[r] for r in a] for a in vans]
    return X, data.queries[tr], ta, data.queries[va], vans, nt


def scifact_slice():
    d = np.load(SCIFACT)
    ans = {}
    for s in ("train", "dev"):
        ptr, idx = d[f"{s}_ans_ptr"], d[f"{s}_ans_idx"]
        ans[s] = [idx[ptr[i]:ptr[i + 1]].tolist() for i in range(len(ptr) - 1)]
    tq, vq = d["train_q_emb"][:200], d["dev_q_emb"][:80]
    ta, va = ans["train"][:200], ans["dev"][:80]
    keep = sorted({i for a in ta + va for i in a})
    rng = np.random.default_rng(0)
    others = rng.choice(np.setdiff1d(np.arange(len(d["doc_emb"])), keep), size=150, replace=False)
    rows = np.array(keep + sorted(others.tolist()))
    remap = {int(r): j for j, r in enumerate(rows)}
    X = d["doc_emb"][rows]
    return X, tq, [[remap[i] for i in a] for a in ta], vq, [[remap[i] for i in a] for a in va], None


CASES = {
    "n_single": ("N", lambda: problem(1, 400, 32, 400, 1)),
    "n_multi_nontrain": ("N", lambda: problem(2, 500, 24, 500, 3, with_nontrain=True)),
    "n_gamma_zero": ("N", lambda: problem(3, 300, 16, 200, 1, val_unrelated=True)),
    "m_single": ("M", lambda: problem(4, 400, 32, 400, 1)),
    "m_multi_nontrain": ("M", lambda: problem(5, 500, 24, 500, 3, with_nontrain=True)),
    "n_scifact_slice": ("N", scifact_slice),
}


def ragged(lists):
    return np.concatenate([[0], np.cumsum([len(a) for a in lists])]).astype(np.int64), \
        np.concatenate([np.asarray(a, np.int64) for a in lists])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = {"nudge-ft": version("nudge-ft"), "torch": torch.__version__, "numpy": np.__version__,
                "command": "python bench/reference/make_parity_fixtures.py", "cases": {}}
    for name, (method, make) in CASES.items():
        if name.endswith("scifact_slice") and not SCIFACT.exists():
            print(f"skip {name}: {SCIFACT} absent", file=sys.stderr)
            continue
        X, tq, ta, vq, va, nt = make()
        model = nudge.NUDGEN() if method == "N" else nudge.NUDGEM()
        out, gamma = captured_gamma(method, lambda: model.finetune_embeddings(
            X, {"q_embs": tq, "q_ans_indx": ta}, {"q_embs": vq, "q_ans_indx": va}, nontrain_embeddings=nt))
        tp, ti = ragged(ta)
        vp, vi = ragged(va)
        arrays = dict(X=X, tq=tq, tptr=tp, tidx=ti, vq=vq, vptr=vp, vidx=vi, out=np.asarray(out, np.float32),
                      gamma=np.float64(gamma), method=np.str_(method))
        if nt is not None:
            arrays["nontrain"] = nt
        np.savez_compressed(OUT / f"{name}.npz", **arrays)
        manifest["cases"][name] = {"method": method, "gamma": gamma, "n": int(X.shape[0]), "d": int(X.shape[1]),
                                   "train": len(ta), "val": len(va), "nontrain": 0 if nt is None else len(nt)}
        print(name, method, gamma, file=sys.stderr)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
