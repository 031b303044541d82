"""Generate the parity fixtures with the REAL reference implementation (nudge-ft 0.1.2, torch CPU).

Run once, in its own environment (never part of the test run; torch is not a dependency):

    python3 -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.13.0 nudge-ft==0.1.2
    /work/venv-ref/bin/python bench/reference/make_parity_fixtures.py [--out DIR]

Each case is a compressed ``<case>.npz`` in tests/core/fixtures/parity/ (manifest.json lists the
cases, the versions and the command). Keys:

* inputs: ``X`` (records), ``tq``/``tptr``/``tidx`` (training queries, answers as CSR),
  ``vq``/``vptr``/``vidx`` (validation), optional ``nontrain``; or ``inputs`` = the name of another
  case whose inputs it shares (the SciFact slice is run through both NUDGE-N and NUDGE-M);
* ``method`` ("N" | "M"), ``val_k`` (NUDGE-N), ``gamma`` (what the reference chose);
* ``out_rows`` / ``out``: rows of the reference's output (float32). Small cases store every row.
  The SciFact cases store the rows a training query answers (the only rows NUDGE can move); for
  every other row the script asserts, before saving, that the reference returned normalize(X) to
  within 1e-6, and the test checks those rows against normalize(X).

The SciFact slice's and the dense cases' inputs are stored as float16 to keep the fixtures small;
the reference ran on their exact float32 up-cast, which is what the tests feed to our
implementation too.

Dense cases (issue #12): make_corpus(labels="dense") problems, tens of graded answers per training
and validation query, with a share of exact-duplicate records, one in distribution and one under
the paper's out-of-distribution protocol (k-means k=2 on the training queries, cluster 0 for
training and validation) with nontrain records. Their seeds are ones where the reference's
NUDGE-M sweep met degenerate intervals [0, 0] (an exact copy of an answer with a larger slope)
and where counting them at γ = 0, as parity mode used to, chose γ = 0 instead of the reference's
γ. For NUDGE-M the manifest records what the reference's sweep saw (``reference_sweep``: its
count at 0 and at the chosen γ, and the degenerate intervals), captured from its own
``_get_point_of_most_intersection`` call.

Recovering gamma. nudge-ft returns only the embeddings. gamma is captured by wrapping the
reference's own methods while it runs: NUDGE-N calls ``_sol_maxm(gamma, ...)`` once per grid value
and then once more with the winner, whose output is what it returns, so gamma = the argument of
the last call; NUDGE-M: the value ``_get_point_of_most_intersection`` returns (it is applied as
``embeddings - gamma * gs``). Both are then cross-checked against the returned vectors: NUDGE-M
moves every trained row by exactly ||x - v|| = gamma; NUDGE-N rows that moved without saturating
satisfy ||x - v||^2 = gamma, and with gamma = 0 nothing moves. The script aborts if a check fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import nudge
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # our deterministic generator makes the synthetic inputs
from nudge_sync.synthetic import kmeans_labels, make_corpus  # noqa: E402

OUT = ROOT / "tests" / "core" / "fixtures" / "parity"
SCIFACT = ROOT.parent / "shared" / "data" / "scifact-minilm.npz"


def captured_gamma(method: str, run):
    """Run the reference and return (output, gamma it chose) by wrapping its own methods."""
    box: list[float] = []
    if method == "N":
        real = nudge.NUDGEN._sol_maxm

        def spy(self, gamma, *args):
            box.append(float(gamma))
            return real(self, gamma, *args)

        nudge.NUDGEN._sol_maxm = spy
    else:
        real = nudge.NUDGEM._get_point_of_most_intersection

        def spy(self, mins, maxs):
            g = real(self, mins, maxs)
            box.append(float(g))
            SWEEP.update(mins=np.asarray(mins), maxs=np.asarray(maxs))  # the intervals it swept
            return g

        nudge.NUDGEM._get_point_of_most_intersection = spy
    try:
        out = run()
    finally:
        if method == "N":
            nudge.NUDGEN._sol_maxm = real
        else:
            nudge.NUDGEM._get_point_of_most_intersection = real
    if method == "N":
        assert len(box) == 26, f"expected 25 grid calls + the final one, got {len(box)}"
    else:
        assert len(box) == 1
    return np.asarray(out), box[-1]


#: The last NUDGE-M run's intervals (lows, highs), as the reference swept them.
SWEEP: dict = {}


def sweep_facts(gamma: float) -> dict:
    """What the reference's sweep saw: its count at γ = 0 and at the γ it chose (the count at v
    is #{low <= v} - #{high <= v}), and the degenerate intervals [0, 0] (an exact copy of an answer
    with a larger slope) that it never counts."""
    lo, hi = SWEEP["mins"], SWEEP["maxs"]
    count = lambda v: int(np.count_nonzero(lo <= v) - np.count_nonzero(hi <= v))  # noqa: E731
    return {"pairs_kept": int(lo.size), "count_at_0": count(0.0), "count_at_gamma": count(gamma),
            "degenerate_at_0": int(np.count_nonzero((lo == 0) & (hi == 0)))}


def cross_check(method, gamma, X, out, trained):
    """The captured gamma must be the one that produced ``out`` (see the module docstring)."""
    v = X / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    rest = np.setdiff1d(np.arange(len(X)), trained)
    assert np.abs(out[rest] - v[rest]).max(initial=0) < 1e-6, "an untrained row moved"
    step = np.linalg.norm(out[trained] - v[trained], axis=1)
    if method == "M":
        np.testing.assert_allclose(step, gamma, rtol=1e-4, atol=1e-6)
    elif gamma == 0:
        assert step.max(initial=0) < 1e-6
    else:
        # rows that saturate jump onto normalize(G), a shorter step; all others move by sqrt(gamma)
        moved = step > 1e-4
        assert (np.abs(step[moved] ** 2 - gamma) < 1e-3).any(), "no row moved by sqrt(gamma)"
        assert (step[moved] ** 2 <= gamma + 1e-4).all(), "a row moved farther than sqrt(gamma)"


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
    X, nt = data.vectors, None
    if with_nontrain:
        X, ta, vans, nt = split_nontrain(X, ta, vans)
    return X, data.queries[tr], ta, data.queries[va], vans, nt


def dense_problem(seed, n, d, n_queries, duplicate_share, ood, with_nontrain=False):
    """Dense, graded, duplicate-bearing labels (make_corpus labels="dense": tens of answers per
    query, validation queries as dense, ``duplicate_share`` of the records exact copies of
    another), float16-rounded. ``ood``: the NUDGE paper's out-of-distribution protocol: k-means
    (k=2) on the training queries, train on cluster 0, validation queries of cluster 0 (nearest
    centre). with_nontrain: records no train/val query answers go to ``nontrain_embeddings``."""
    data = make_corpus(n_records=n, dim=d, n_queries=n_queries, labels="dense", seed=seed,
                       duplicate_share=duplicate_share)
    tr, va = data.rows("train"), data.rows("val")
    if ood:
        tr, va = cluster_zero(data.queries, tr, va, seed)
    ta, vans = [data.answers[q] for q in tr], [data.answers[q] for q in va]
    f16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    X, nt = f16(data.vectors), None
    if with_nontrain:
        X, ta, vans, nt = split_nontrain(X, ta, vans)
    return X, f16(data.queries[tr]), ta, f16(data.queries[va]), vans, nt


def cluster_zero(queries, tr, va, seed):
    """Training and validation queries of k-means cluster 0 of the training queries."""
    lab = kmeans_labels(queries[tr], 2, seed=seed)
    centres = np.stack([queries[tr][lab == j].mean(0) for j in range(2)])
    v_lab = np.argmin(((queries[va][:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return tr[lab == 0], va[v_lab == 0]


def split_nontrain(X, ta, vans):
    """Rows no train/val query answers become nontrain; answers renumbered."""
    used = sorted({r for a in ta + vans for r in a})
    rest = np.setdiff1d(np.arange(len(X)), used)
    remap = {r: j for j, r in enumerate(used)}
    return X[used], [[remap[r] for r in a] for a in ta], [[remap[r] for r in a] for a in vans], X[rest]


def scifact_slice(n_docs=1000, n_train=250, n_dev=80):
    """The first ``n_train`` train and ``n_dev`` dev queries of SciFact with all their answers,
    plus random other documents up to ``n_docs``; float16-rounded (stored as float16)."""
    d = np.load(SCIFACT)
    ans = {}
    for s in ("train", "dev"):
        ptr, idx = d[f"{s}_ans_ptr"], d[f"{s}_ans_idx"]
        ans[s] = [idx[ptr[i]:ptr[i + 1]].tolist() for i in range(len(ptr) - 1)]
    tq, vq = d["train_q_emb"][:n_train], d["dev_q_emb"][:n_dev]
    ta, va = ans["train"][:n_train], ans["dev"][:n_dev]
    keep = sorted({i for a in ta + va for i in a})
    rng = np.random.default_rng(0)
    others = rng.choice(np.setdiff1d(np.arange(len(d["doc_emb"])), keep), size=n_docs - len(keep), replace=False)
    rows = np.array(keep + sorted(others.tolist()))
    remap = {int(r): j for j, r in enumerate(rows)}
    f16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    return (f16(d["doc_emb"][rows]), f16(tq), [[remap[i] for i in a] for a in ta], f16(vq),
            [[remap[i] for i in a] for a in va], None)


# name: (method, inputs, options); inputs = a function or the name of an earlier case to share
CASES = {
    "n_single": ("N", lambda: problem(1, 400, 32, 400, 1), {}),
    "n_multi_nontrain": ("N", lambda: problem(2, 500, 24, 500, 3, with_nontrain=True), {}),
    "n_multi_nontrain_valk3": ("N", "n_multi_nontrain", {"val_k": 3}),
    "n_gamma_zero": ("N", lambda: problem(3, 300, 16, 200, 1, val_unrelated=True), {}),
    "m_single": ("M", lambda: problem(4, 400, 32, 400, 1), {}),
    "m_multi_nontrain": ("M", lambda: problem(5, 500, 24, 500, 3, with_nontrain=True), {}),
    "m_gamma_zero": ("M", lambda: problem(6, 300, 16, 200, 1, val_unrelated=True), {}),
    "n_scifact_slice": ("N", scifact_slice, {"f16": True, "moved_only": True}),
    "m_scifact_slice": ("M", "n_scifact_slice", {"moved_only": True}),
    # dense labels with exact duplicates (issue #12): the seeds are ones where a copy of an answer
    # with a larger slope gives the interval [0, 0] and decides NUDGE-M's γ
    "m_dense_dup": ("M", lambda: dense_problem(4, 1000, 64, 1100, 0.1, ood=False), {"f16": True}),
    "n_dense_dup": ("N", "m_dense_dup", {}),
    "m_dense_ood_nontrain": ("M", lambda: dense_problem(1, 600, 48, 700, 0.25, ood=True, with_nontrain=True),
                             {"f16": True}),
    "n_dense_ood_nontrain": ("N", "m_dense_ood_nontrain", {}),
    "n_dense_ood_nontrain_valk3": ("N", "m_dense_ood_nontrain", {"val_k": 3}),
}


def duplicate_rows(X) -> int:
    """Rows that have an exact copy elsewhere in X."""
    _, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    return int(np.count_nonzero(counts[inverse.reshape(-1)] > 1))


def ragged(lists):
    return np.concatenate([[0], np.cumsum([len(a) for a in lists])]).astype(np.int64), \
        np.concatenate([np.asarray(a, np.int64) for a in lists])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=OUT)
    out_dir = ap.parse_args().out
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = {
        "nudge-ft": version("nudge-ft"), "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "torch_threads": torch.get_num_threads(), "device": "cpu",
        "command": "/work/venv-ref/bin/python bench/reference/make_parity_fixtures.py",
        "gamma_recovery": "NUDGE-N: argument of the last NUDGEN._sol_maxm call; NUDGE-M: return value of "
                          "NUDGEM._get_point_of_most_intersection; both cross-checked against the output vectors",
        "cases": {},
    }
    made = {}
    for name, (method, make, opts) in CASES.items():
        if "scifact" in name and not SCIFACT.exists():
            print(f"skip {name}: {SCIFACT} absent", file=sys.stderr)
            continue
        shared = make if isinstance(make, str) else None
        X, tq, ta, vq, va, nt = made[shared] if shared else make()
        made[name] = (X, tq, ta, vq, va, nt)
        val_k = int(opts.get("val_k", 1))
        tr, vd = {"q_embs": tq, "q_ans_indx": ta}, {"q_embs": vq, "q_ans_indx": va}
        if method == "N":
            run = lambda: nudge.NUDGEN(device=torch.device("cpu")).finetune_embeddings(  # noqa: E731
                X, tr, vd, nontrain_embeddings=nt, val_k=val_k)
        else:
            run = lambda: nudge.NUDGEM(device=torch.device("cpu")).finetune_embeddings(  # noqa: E731
                X, tr, vd, nontrain_embeddings=nt)
        out, gamma = captured_gamma(method, run)
        out = out.astype(np.float32)
        assert np.isfinite(out).all()
        trained = np.unique(np.concatenate([np.asarray(a, np.int64) for a in ta]))
        cross_check(method, gamma, X, out, trained)
        rows = trained if opts.get("moved_only") else np.arange(len(X), dtype=np.int64)
        arrays = dict(out_rows=rows, out=out[rows], gamma=np.float64(gamma), method=np.str_(method),
                      val_k=np.int64(val_k))
        if shared:
            arrays["inputs"] = np.str_(shared)
        else:
            cast = np.float16 if opts.get("f16") else np.float32
            tp, ti = ragged(ta)
            vp, vi = ragged(va)
            arrays.update(X=X.astype(cast), tq=tq.astype(cast), tptr=tp, tidx=ti, vq=vq.astype(cast), vptr=vp, vidx=vi)
            if nt is not None:
                arrays["nontrain"] = nt.astype(cast)
        np.savez_compressed(out_dir / f"{name}.npz", **arrays)
        manifest["cases"][name] = {
            "method": method, "gamma": gamma, "val_k": val_k, "n": int(X.shape[0]), "d": int(X.shape[1]),
            "train": len(ta), "val": len(va), "multi_answer": any(len(a) > 1 for a in ta + va),
            "nontrain": 0 if nt is None else len(nt), "moved_rows": int(trained.size),
            "stored_rows": "trained" if opts.get("moved_only") else "all", "inputs": shared or name,
            "input_dtype": "float16" if (opts.get("f16") or (shared and CASES[shared][2].get("f16"))) else "float32",
            "val_answers_per_query": round(float(np.mean([len(set(a)) for a in va])), 2),
            "duplicate_rows": duplicate_rows(X if nt is None else np.concatenate([X, nt])),
            "ood_split": "ood" in (shared or name)}
        if method == "M":
            manifest["cases"][name]["reference_sweep"] = sweep_facts(gamma)
        print(name, method, gamma, file=sys.stderr)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out_dir.glob("*.npz"))
    print(f"total {total / 2**20:.2f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
