"""The NUDGE core against the reference (nudge-ft 0.1.2 on torch CPU), same machine, same run.

Needs an environment with both (torch is never a dependency of nudge-sync):

    python3 -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.13.0 nudge-ft==0.1.2
    /work/venv-ref/bin/pip install --no-deps -e .
    /work/venv-ref/bin/python -m bench.bench_core            # writes bench/results/core.md

Options: ``--ref-timeout S`` (time box of one reference run, default 1200 s), ``--no-reference-large``
(skip the reference on the 200k corpus), ``--sizes 50000,200000,800000`` (scaling part).

1. Quality on SciFact (train on train, gamma on dev, score test: NDCG@10, Recall@10): no
   fine-tuning, reference NUDGE-N / NUDGE-M (gamma captured from the reference's own calls, as in
   bench/reference/make_parity_fixtures.py), ours in parity mode, ours in fine mode (objective
   NDCG@10). NUDGE-M is scored by dot product, everything else is unit-norm.
2. Speed and peak memory of NUDGE-N gamma selection + update, on SciFact and on the synthetic
   200,000 x 384 corpus (nudge_sync.synthetic.make_corpus, 29,000 queries: the first 20,000
   training and 2,000 validation queries). Every measurement is a fresh subprocess that loads the
   arrays (saved once as .npy), then resets the peak-RSS mark (Linux /proc/self/clear_refs "5")
   and reads VmRSS as the baseline; peak extra = VmHWM after the fit minus that baseline, i.e.
   what the method adds to the process on top of its inputs (torch allocations included, which
   tracemalloc cannot see). ru_maxrss minus the baseline is printed too (equal unless loading
   peaked higher). For ours a separate run under tracemalloc gives numpy's own peak as a
   cross-check. Ours is measured three ways: the estimator the sync engine uses (NudgeN, parity
   mode, base = the records that answer a training query, validation context streamed over the
   rest of the corpus, returns the moved rows), the same with the context given (built outside
   the timer: in the sync engine the database's kNN supplies it), and the drop-in
   nudge_sync.compat.NUDGEN (returns every row, like the reference).
3. Scaling with the validation context given: the same labels (a 50,000-record make_corpus with
   its 20,000 training / 2,000 validation queries) inside corpora of 50k, 200k and 800k records
   (padded with records from another make_corpus seed). The fit cost follows the moved records;
   only the context (built here by an exact streamed pass, in production by the database's kNN)
   grows with the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact-minilm.npz"
RESULTS = ROOT / "bench" / "results"
N_TRAIN, N_VAL = 20_000, 2_000


# -- memory probes ---------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- data ------------------------------------------------------------------------------------------


def _lists(ptr, idx):
    return [idx[ptr[i]:ptr[i + 1]].tolist() for i in range(len(ptr) - 1)]


def _ragged(lists):
    return (np.concatenate([[0], np.cumsum([len(a) for a in lists])]).astype(np.int64),
            np.concatenate([np.asarray(a, np.int64) for a in lists]))


def scifact():
    d = np.load(SCIFACT)
    q = {s: d[f"{s}_q_emb"] for s in ("train", "dev", "test")}
    ans = {s: _lists(d[f"{s}_ans_ptr"], d[f"{s}_ans_idx"]) for s in ("train", "dev", "test")}
    rel = {s: _lists(d[f"{s}_ans_ptr"], d[f"{s}_ans_rel"].astype(np.float64)) for s in ("train", "dev", "test")}
    return d["doc_emb"], q, ans, rel


def save_synthetic(folder: Path) -> dict:
    from nudge_sync.synthetic import make_corpus

    t = time.perf_counter()
    data = make_corpus(n_records=200_000, dim=384, n_queries=29_000, seed=0)
    tr, va = data.rows("train")[:N_TRAIN], data.rows("val")[:N_VAL]
    np.save(folder / "X.npy", data.vectors)
    np.save(folder / "tq.npy", data.queries[tr])
    np.save(folder / "vq.npy", data.queries[va])
    for name, rows in (("t", tr), ("v", va)):
        p, i = _ragged([data.answers[r] for r in rows])
        np.save(folder / f"{name}ptr.npy", p)
        np.save(folder / f"{name}idx.npy", i)
    return {"seconds": time.perf_counter() - t, "train": int(tr.size), "val": int(va.size),
            "all_train": int(data.rows("train").size), "all_val": int(data.rows("val").size)}


def load_dataset(dataset: str):
    if dataset == "scifact":
        X, q, ans, _ = scifact()
        return X, q["train"], ans["train"], q["dev"], ans["dev"]
    f = Path(dataset)
    return (np.load(f / "X.npy"), np.load(f / "tq.npy"), _lists(np.load(f / "tptr.npy"), np.load(f / "tidx.npy")),
            np.load(f / "vq.npy"), _lists(np.load(f / "vptr.npy"), np.load(f / "vidx.npy")))


# -- one measurement per fresh process -------------------------------------------------------------


def child(impl: str, dataset: str, trace: bool) -> None:
    X, tq, ta, vq, va = load_dataset(dataset)
    extra_out: dict = {}
    ctx = base = None
    if impl == "reference":
        import nudge
        import torch

        from bench.reference.make_parity_fixtures import captured_gamma

        extra_out["threads"] = torch.get_num_threads()
    else:
        from nudge_sync import NudgeN, ValidationContext
        from nudge_sync.compat import NUDGEN

        extra_out["threads"] = os.environ.get("OMP_NUM_THREADS", "default")
        if impl == "ours-ctx-given":  # context built before the timer, like a database's kNN would
            base = np.unique(np.concatenate([np.asarray(a, np.int64) for a in ta]))
            ctx = ValidationContext.from_corpus(vq, X, 1, exclude=base)
    import gc

    gc.collect()
    if trace:
        import tracemalloc

        tracemalloc.start()
    reset_ok = _reset_peak()
    base_rss = _status_mb("VmRSS")
    ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    if impl == "reference":
        tr, vd = {"q_embs": tq, "q_ans_indx": ta}, {"q_embs": vq, "q_ans_indx": va}
        out, gamma = captured_gamma("N", lambda: nudge.NUDGEN(device=torch.device("cpu")).finetune_embeddings(X, tr, vd))
        moved = int(np.count_nonzero(np.abs(out - X / np.linalg.norm(X, axis=1, keepdims=True)).max(axis=1) > 1e-6)) \
            if not trace else -1
    elif impl == "ours-compat":
        model = NUDGEN()
        out = model.finetune_embeddings(X, {"q_embs": tq, "q_ans_indx": ta}, {"q_embs": vq, "q_ans_indx": va})
        gamma, moved = model.gamma_, int(model.estimator_.moved_ids_.size)
    elif impl == "ours":  # the sync engine's path: context streamed over the records that do not move
        base = np.unique(np.concatenate([np.asarray(a, np.int64) for a in ta]))
        ctx = ValidationContext.from_corpus(vq, X, 1, exclude=base)
        est = NudgeN().fit(X[base], tq, ta, vq, va, base_ids=base, val_context=ctx)
        gamma, moved = est.gamma_, int(est.moved_ids_.size)
    elif impl == "ours-ctx-given":
        est = NudgeN().fit(X[base], tq, ta, vq, va, base_ids=base, val_context=ctx)
        gamma, moved = est.gamma_, int(est.moved_ids_.size)
    else:
        raise ValueError(impl)
    seconds = time.perf_counter() - t
    hwm = _status_mb("VmHWM")
    ru1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {"impl": impl, "dataset": dataset, "seconds": seconds, "gamma": gamma, "moved": moved,
           "extra_mb": hwm - base_rss if reset_ok else ru1 - base_rss, "ru_extra_mb": ru1 - max(ru0, base_rss),
           "peak_method": "VmHWM after clear_refs" if reset_ok else "ru_maxrss", "corpus_mb": X.nbytes / 2**20,
           "base_rss_mb": base_rss, "load1": os.getloadavg()[0], **extra_out}
    if trace:
        import tracemalloc

        res["tracemalloc_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    print(json.dumps(res))


def run_child(impl: str, dataset: str, timeout: float = 1800, trace: bool = False) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_core", "--child", impl, dataset] + (["--trace"] if trace else [])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {impl:15s} {Path(dataset).name:10s} {res['seconds']:8.2f} s  gamma {res['gamma']:.2f}  "
          f"extra {res['extra_mb']:7.0f} MB{'  trace ' + format(res['tracemalloc_mb'], '.0f') + ' MB' if trace else ''}",
          file=sys.stderr, flush=True)
    return res


# -- 1. quality ------------------------------------------------------------------------------------


def quality() -> list[str]:
    import nudge
    import torch

    from bench.reference.make_parity_fixtures import captured_gamma
    from nudge_sync import Answers, NudgeM, NudgeN, ValidationContext, evaluate, search_exact

    X, q, ans, rel = scifact()
    A = {s: Answers.from_lists(ans[s], rel[s]) for s in ans}
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)

    def score(Y):
        ids, _ = search_exact(q["test"], Y, 10)  # dot product (unit rows: cosine)
        r = evaluate(ids, A["test"], ["ndcg@10", "recall@10"])
        return 100 * r["ndcg@10"], 100 * r["recall@10"]

    rows = []

    def add(label, gamma, Y, seconds):
        n, r = score(Y)
        g = "-" if gamma is None else f"{gamma:.4f}"
        s = "-" if seconds is None else f"{seconds:.2f}"
        rows.append(f"| {label} | {g} | {n:.2f} | {r:.2f} | {s} |")
        print("  " + rows[-1], file=sys.stderr, flush=True)

    add("no fine-tuning", None, Xn, None)
    tr, dv = {"q_embs": q["train"], "q_ans_indx": ans["train"]}, {"q_embs": q["dev"], "q_ans_indx": ans["dev"]}
    ref_gamma = {}
    for m, cls in (("N", nudge.NUDGEN), ("M", nudge.NUDGEM)):
        t = time.perf_counter()
        out, g = captured_gamma(m, lambda: cls(device=torch.device("cpu")).finetune_embeddings(X, tr, dv))
        ref_gamma[m] = g
        add(f"reference NUDGE-{m}", g, out, time.perf_counter() - t)
    base = np.unique(A["train"].ids)
    ctx10 = ValidationContext.from_corpus(q["dev"], X, 10, exclude=base)
    for label, est, m in (("ours NUDGE-N parity", NudgeN(), "N"), ("ours NUDGE-M parity", NudgeM(), "M"),
                          ("ours NUDGE-N fine (ndcg@10)", NudgeN(gamma_search="fine", objective="ndcg@10"), "N"),
                          ("ours NUDGE-M fine (ndcg@10)", NudgeM(gamma_search="fine", objective="ndcg@10"), "M")):
        t = time.perf_counter()
        est.fit(X[base], q["train"], ans["train"], q["dev"], ans["dev"], base_ids=base, val_context=ctx10)
        sec = time.perf_counter() - t
        add(label, est.gamma_, est.transform(Xn.astype(np.float32)), sec)
        if "parity" in label:
            assert abs(est.gamma_ - ref_gamma[m]) <= 1e-9 + 1e-5 * ref_gamma[m], (label, est.gamma_, ref_gamma[m])
    return ["| method | gamma | test NDCG@10 | test Recall@10 | fit s |", "|---|---|---|---|---|", *rows]


# -- 3. scaling ------------------------------------------------------------------------------------


def scaling(sizes: list[int]) -> list[str]:
    from nudge_sync import NudgeN, ValidationContext
    from nudge_sync.synthetic import make_corpus

    labelled = make_corpus(n_records=50_000, dim=384, n_queries=29_000, seed=0)
    tr, va = labelled.rows("train")[:N_TRAIN], labelled.rows("val")[:N_VAL]
    tq, vq = labelled.queries[tr], labelled.queries[va]
    ta, vans = [labelled.answers[i] for i in tr], [labelled.answers[i] for i in va]
    pad_n = max(sizes) - labelled.vectors.shape[0]
    pad = make_corpus(n_records=max(pad_n, 2), dim=384, n_queries=1, seed=1).vectors
    base = np.unique(np.concatenate([np.asarray(a, np.int64) for a in ta]))
    lines = ["| corpus records | moved records | context build s (streamed, exact) | fit s, parity (context given) "
             "| fit s, fine ndcg@10 (context given) | gamma parity / fine |", "|---|---|---|---|---|---|"]
    for n in sizes:
        X = np.concatenate([labelled.vectors, pad[: n - labelled.vectors.shape[0]]]) if n > 50_000 else labelled.vectors
        t = time.perf_counter()
        ctx = ValidationContext.from_corpus(vq, X, 10, exclude=base)
        t_ctx = time.perf_counter() - t
        Xb = np.ascontiguousarray(X[base])
        del X
        times, ests = [], []
        for est in (NudgeN(), NudgeN(gamma_search="fine", objective="ndcg@10")):
            best = np.inf
            for _ in range(3):  # best of 3: the fit is short
                t = time.perf_counter()
                est.fit(Xb, tq, ta, vq, vans, base_ids=base, val_context=ctx)
                best = min(best, time.perf_counter() - t)
            times.append(best)
            ests.append(est)
        lines.append(f"| {n:,} | {ests[0].moved_ids_.size:,} | {t_ctx:.2f} | {times[0]:.2f} | {times[1]:.2f} | "
                     f"{ests[0].gamma_:.2f} / {ests[1].gamma_:.4f} |")
        print("  " + lines[-1], file=sys.stderr, flush=True)
    if pad.shape[0] < 150_000:
        pad = make_corpus(n_records=150_000, dim=384, n_queries=1, seed=1).vectors
    X200 = np.concatenate([labelled.vectors, pad[:150_000]])
    del pad
    lines += ["", "The other direction: the 200,000-record corpus, the same 2,000 validation queries, more and "
              "more training queries (so more moved records); context built outside the timer each time.", "",
              "| training queries | moved records | fit s, parity (context given) | fit s / 1,000 moved |",
              "|---|---|---|---|"]
    for n_tr in (2_500, 5_000, 10_000, 20_000):
        sub = ta[:n_tr]
        base = np.unique(np.concatenate([np.asarray(a, np.int64) for a in sub]))
        ctx = ValidationContext.from_corpus(vq, X200, 1, exclude=base)
        Xb = np.ascontiguousarray(X200[base])
        best, est = np.inf, NudgeN()
        for _ in range(3):
            t = time.perf_counter()
            est.fit(Xb, tq[:n_tr], sub, vq, vans, base_ids=base, val_context=ctx)
            best = min(best, time.perf_counter() - t)
        m = est.moved_ids_.size
        lines.append(f"| {n_tr:,} | {m:,} | {best:.3f} | {1000 * best / max(m, 1):.3f} |")
        print("  " + lines[-1], file=sys.stderr, flush=True)
    return lines


# -- main ------------------------------------------------------------------------------------------


def speed(ref_timeout: float, reference_large: bool) -> tuple[list[str], list[str]]:
    lines = ["| data | implementation | gamma | moved | fit s | speed-up vs reference | peak extra MB | "
             "ru_maxrss extra MB | tracemalloc peak MB | extra / corpus array |", "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_core_"))
    info = save_synthetic(tmp)
    notes.append(f"Synthetic corpus: make_corpus(n_records=200_000, dim=384, n_queries=29_000, seed=0) made in "
                 f"{info['seconds']:.1f} s; {info['all_train']:,} training / {info['all_val']:,} validation queries, "
                 f"of which the first {info['train']:,} / {info['val']:,} are used.")
    datasets = (["scifact"] if SCIFACT.exists() else []) + [str(tmp)]
    for ds in datasets:
        label = "SciFact 5,183 x 384" if ds == "scifact" else "synthetic 200,000 x 384"
        res = {}
        for impl in ("ours", "ours-ctx-given", "ours-compat"):
            runs = [run_child(impl, ds) for _ in range(3)]  # best of 3: the machine is shared
            res[impl] = min(runs, key=lambda r: r["seconds"])
            res[impl]["tracemalloc_mb"] = run_child(impl, ds, trace=True)["tracemalloc_mb"]
        ref = None
        if ds == "scifact" or reference_large:
            try:
                runs = [run_child("reference", ds, timeout=ref_timeout) for _ in range(3 if ds == "scifact" else 1)]
                ref = min(runs, key=lambda r: r["seconds"])
            except subprocess.TimeoutExpired:
                notes.append(f"{label}: the reference did not finish within the {ref_timeout:.0f} s time box.")
            except RuntimeError as exc:
                notes.append(f"{label}: the reference failed: {str(exc)[-300:]}")
        loads = [r["load1"] for r in res.values()] + ([ref["load1"]] if ref else [])
        notes.append(f"{label}: 1-minute load average at the end of the measured runs {min(loads):.1f}..{max(loads):.1f} "
                     f"on {os.cpu_count()} CPUs (the machine is shared; timings are the best of "
                     f"{3 if ds == 'scifact' else 1} fresh runs).")
        rows = ([("reference nudge-ft 0.1.2 (torch)", ref)] if ref else []) + [
            ("ours NudgeN parity (context streamed in the fit)", res["ours"]),
            ("ours NudgeN parity (context given)", res["ours-ctx-given"]),
            ("ours compat.NUDGEN drop-in (all rows returned)", res["ours-compat"])]
        for name, r in rows:
            sp = "1.0x" if r is ref else (f"{ref['seconds'] / r['seconds']:.1f}x" if ref else "-")
            tm = f"{r['tracemalloc_mb']:.0f}" if "tracemalloc_mb" in r else "-"
            lines.append(f"| {label} | {name} | {r['gamma']:.2f} | {r['moved']:,} | {r['seconds']:.2f} | {sp} | "
                         f"{r['extra_mb']:.0f} | {r['ru_extra_mb']:.0f} | {tm} | {r['extra_mb'] / r['corpus_mb']:.2f} |")
        if ref:
            same = all(abs(r["gamma"] - ref["gamma"]) < 1e-9 for r in res.values())
            notes.append(f"{label}: corpus array {ref['corpus_mb']:.0f} MB; reference threads {ref['threads']}; "
                         f"same gamma as the reference: {'yes' if same else 'NO'} ({ref['gamma']:.2f}).")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return lines, notes


MEMORY_NOTE = (
    "Memory columns. *peak extra MB*: VmHWM after the fit minus VmRSS just before it, the peak mark "
    "having been reset (/proc/self/clear_refs 5) once the inputs were loaded: what the method adds, "
    "torch's allocations included (the primary figure; *extra / corpus array* uses it). *ru_maxrss extra "
    "MB*: getrusage ru_maxrss after the fit minus max(ru_maxrss before, VmRSS before); ru_maxrss cannot be "
    "reset, so it reads 0 whenever loading the inputs peaked higher than the fit did, which is why it is "
    "only a cross-check. *tracemalloc peak MB*: numpy's own allocations in a separate run of ours "
    "(tracemalloc cannot see torch). The drop-in compat.NUDGEN returns a full copy of the corpus, like "
    "the reference: 1.0x of its figure is that returned array.")


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--short", "--", "nudge_sync"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
        dirty = [ln[3:] for ln in dirty if ln.strip()]
        return f"commit {head or '?'}" + (f", uncommitted changes in {', '.join(dirty)}" if dirty else ", clean nudge_sync/")
    except (OSError, subprocess.SubprocessError):
        return "git state unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-timeout", type=float, default=1200)
    ap.add_argument("--no-reference-large", action="store_true")
    ap.add_argument("--sizes", default="50000,200000,800000")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: quality,speed,scaling")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    RESULTS.mkdir(exist_ok=True)
    import numpy

    versions = {"numpy": numpy.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                "load average at start": f"{os.getloadavg()[0]:.1f}"}
    try:
        import torch
        from importlib.metadata import version

        versions.update(torch=torch.__version__, nudge_ft=version("nudge-ft"), torch_threads=torch.get_num_threads())
    except ImportError:
        pass
    cmd = "/work/venv-ref/bin/python -m bench.bench_core" + "".join(f" {a}" for a in sys.argv[1:])
    parts = ["# Core benchmark: NUDGE in numpy vs the reference nudge-ft", "",
             f"Command (from the repository root, environment with torch + nudge-ft + nudge-sync): `{cmd}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", {platform.processor() or platform.machine()}.", "",
             f"Code: {_git_state()}.", ""]
    if "quality" not in skip and SCIFACT.exists():
        print("quality", file=sys.stderr)
        parts += ["## 1. Quality on SciFact (train on train, gamma on dev, test split, %)", "", *quality(), ""]
    if "speed" not in skip:
        print("speed", file=sys.stderr)
        lines, notes = speed(args.ref_timeout, not args.no_reference_large)
        parts += ["## 2. Speed and peak memory: NUDGE-N gamma selection + update", "", *lines, "",
                  *[f"- {n}" for n in notes], f"- {MEMORY_NOTE}", ""]
    if "scaling" not in skip:
        print("scaling", file=sys.stderr)
        parts += ["## 3. Fit cost with the validation context given: same labels, growing corpus", "",
                  *scaling([int(s) for s in args.sizes.split(",")]), ""]
    parts += [f"Load average at the end: {os.getloadavg()[0]:.1f} (other jobs shared the machine: timings are the best of "
              "3 fresh processes, the reference on the 200k corpus ran once).", ""]
    text = "\n".join(parts)
    (RESULTS / "core.md").write_text(text)
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], "--trace" in sys.argv)
    else:
        main()
