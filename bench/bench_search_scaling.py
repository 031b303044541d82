"""``search`` context mode as the corpus grows 10x with the same feedback log.

In ``search`` mode a run asks the database's own kNN (with the moving records excluded) instead of
streaming the collection, so its cost should follow the labels, not the corpus - provided the
database's kNN is sublinear. Milvus Lite 3.x (a Python engine) is not: every search call first
walks every primary key of every segment in Python (its cross-segment dedup map and tombstone
mask), index or not, and it builds its faiss HNSW only in a background thread after compaction
(measured: 500 queries over 20k vs 200k records take 0.6 s vs 5.0 s). Qdrant local mode always
searches by brute force. So this benchmark's main subject is Chroma's persistent client, whose HNSW
index is maintained on every write; Milvus Lite can be run beside it for contrast.

Each run is a full sync (writes included: the same records move at both sizes); next to it, the
raw client's own write of the same vectors at that size, because the database's write cost itself
grows with the index (Chroma persists its HNSW segment on write).

Run: ``python -m bench.bench_search_scaling [small] [large] [dim] [backend ...]``
(defaults 100,000 and 1,000,000 records, 64 dims, chroma milvus). Writes bench/results/search_scaling.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import connectors
import nudge_sync
from bench.bench_sync import ID_TYPE, LOCATION, RAW, RESULTS
from nudge_sync.synthetic import make_corpus


def _load_in_child(uri: str, ids: list, vectors: np.ndarray, workdir: Path) -> None:
    """Load the collection in a separate process, then flush dirty pages to disk.

    As in production, the collection exists before the sync job starts (another process built
    it), and the sync is not timed while the kernel is still writing back the gigabytes the bulk
    load left dirty."""
    arrays = workdir / "load.npz"
    np.savez(arrays, ids=np.asarray(ids), vectors=vectors)
    code = ("import sys, numpy as np, connectors; a = np.load(sys.argv[2]); "
            "connectors.create_collection(sys.argv[1], a['ids'].tolist(), a['vectors'], metric='cosine')")
    subprocess.run([sys.executable, "-c", code, uri, str(arrays)], check=True, cwd=Path(__file__).resolve().parents[1])
    arrays.unlink()
    os.sync()


def run(backend: str, n_small: int, n: int, dim: int, workdir: Path) -> dict:
    # the same labelled log for both sizes: the small corpus's records and queries, padded with
    # more records (other topics) for the large one
    small = make_corpus(n_records=n_small, dim=dim, n_queries=3_000, seed=0, id_type=ID_TYPE[backend])
    if n > n_small:
        extra = make_corpus(n_records=n - n_small, dim=dim, n_queries=1, seed=1, id_type=ID_TYPE[backend])
        offset = n_small * 7 + 7 if ID_TYPE[backend] == "int" else 0
        extra_ids = [i + offset for i in extra.ids] if ID_TYPE[backend] == "int" else [f"x-{i}" for i in extra.ids]
        ids, vectors = small.ids + extra_ids, np.vstack([small.vectors, extra.vectors])
    else:
        ids, vectors = small.ids, small.vectors
    uri = f"{backend}://{workdir / LOCATION[backend]}?collection=scale"
    t = time.perf_counter()
    _load_in_child(uri, ids, vectors, workdir)
    load = time.perf_counter() - t
    with connectors.open_store(uri) as store:
        store.append_log("scale_feedback", small.log_entries(("train", "val")))
        # time spent inside the vector update calls (the database's own write, whose cost grows with
        # its index) is recorded separately from the rest of the run
        in_update = [0.0]
        update = store.update_vectors

        def timed_update(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return update(*args, **kwargs)
            finally:
                in_update[0] += time.perf_counter() - t0

        store.update_vectors = timed_update
        t = time.perf_counter()
        # a full run, writes included: the same records move at both sizes
        report = nudge_sync.sync(store, nudge_sync.SyncOptions(context="search", max_changed_fraction=1.0))
        seconds = time.perf_counter() - t
    # the database's own cost of that write at this size: the raw client writing the same number of
    # vectors (the originals back into the records we changed), measured right after
    _, raw_write = RAW[backend](workdir / LOCATION[backend], "scale")
    rows = {i: r for r, i in enumerate(ids)}
    written = list(report.written_ids)
    t = time.perf_counter()
    raw_write(written, vectors[[rows[i] for i in written]])
    raw_write_s = time.perf_counter() - t
    return {"backend": backend, "n": n, "load_s": round(load, 1), "sync_s": round(seconds, 2),
            "gamma": report.gamma, "context_s": round(report.timings.get("plan", 0.0), 2),
            "written": len(written), "raw_write_s": round(raw_write_s, 2), "update_s": round(in_update[0], 2),
            "timings": report.timings}


def main(argv: list[str]) -> None:
    small = int(argv[1]) if len(argv) > 1 else 100_000
    large = int(argv[2]) if len(argv) > 2 else 1_000_000
    dim = int(argv[3]) if len(argv) > 3 else 64
    backends = argv[4:] or ["chroma", "milvus"]
    lines = ["| backend | records | vectors written | sync (search mode) s | of which plan step (kNN context, fit) s | of which inside "
             "update_vectors s | the rest s | raw client's write of the same vectors s | gamma | growth of sync | "
             "growth of the rest |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for backend in backends:
        base = None
        for n in (small, large):
            with tempfile.TemporaryDirectory(prefix=f"bench-scale-{backend}-") as tmp:
                r = run(backend, small, n, dim, Path(tmp))
            own = r["sync_s"] - r["update_s"]
            base = base or (r["sync_s"], own)
            print(r, flush=True)
            lines.append(f"| {backend} | {n:,} | {r['written']:,} | {r['sync_s']} | {r['context_s']} | {r['update_s']} | "
                         f"{own:.2f} | {r['raw_write_s']} | {r['gamma']:.4f} | {r['sync_s'] / base[0]:.2f}x | "
                         f"{own / base[1]:.2f}x |")
            print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_scaling.md").write_text(
        f"`python -m bench.bench_search_scaling {small} {large} {dim} {' '.join(backends)}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv)
