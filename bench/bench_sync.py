"""End-to-end sync time per backend, next to the raw client reading the collection and writing
the changed records, measured in the same run (target: sync in exact mode <= 1.5x read + write).

For each embedded backend: load the synthetic corpus (``nudge_sync.synthetic``, ``n`` records)
with its labelled log, then time

* ``raw read``  the database's own client reading every (id, vector) in its fastest page size;
* ``raw write`` the database's own vector-only write of exactly the vectors our run wrote (same
  ids, same values), in the client's natural batch size, on a copy of the ids not yet rewritten;
* ``sync``      ``nudge_sync.sync`` in exact mode: read log, stream the collection, fit, gate,
  save originals, write, read back and verify.

Run: ``python -m bench.bench_sync [n] [dim] [backend ...]`` (defaults 100,000 x 128, all three).
Writes bench/results/sync.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import connectors
import nudge_sync
from nudge_sync.synthetic import make_corpus

RESULTS = Path(__file__).resolve().parent / "results"
#: The raw clients read in pages of this size (Milvus: twice it): measured at 100k x 128, their
#: fastest (1,000-row pages take 2-2.7x longer on Qdrant local and Chroma, 2.7x on Milvus Lite).
RAW_PAGE = 5000


def _raw_qdrant(path: Path, name: str) -> tuple[Any, Any]:
    from qdrant_client import models

    from connectors.qdrant import local_client

    def read() -> int:
        with local_client(str(path)) as c:
            n, offset = 0, None
            while True:
                pts, offset = c.scroll(name, limit=RAW_PAGE, offset=offset, with_payload=False, with_vectors=True)
                np.asarray([p.vector for p in pts], dtype=np.float32)
                n += len(pts)
                if offset is None:
                    return n

    def write(ids: list[Any], vecs: np.ndarray) -> None:
        with local_client(str(path)) as c:
            for s in range(0, len(ids), 256):
                c.update_vectors(name, points=[models.PointVectors(id=i, vector=v.tolist())
                                               for i, v in zip(ids[s:s + 256], vecs[s:s + 256])], wait=True)

    return read, write


def _raw_milvus(path: Path, name: str) -> tuple[Any, Any]:
    from pymilvus import MilvusClient

    def read() -> int:
        c = MilvusClient(str(path))
        it = c.query_iterator(name, batch_size=2 * RAW_PAGE, filter="", output_fields=["vector"])
        n = 0
        while rows := it.next():
            np.asarray([r["vector"] for r in rows], dtype=np.float32)
            n += len(rows)
        it.close()
        return n

    def write(ids: list[Any], vecs: np.ndarray) -> None:
        c = MilvusClient(str(path))
        for s in range(0, len(ids), 1000):
            c.upsert(name, [{"id": i, "vector": v.tolist()} for i, v in zip(ids[s:s + 1000], vecs[s:s + 1000])],
                     partial_update=True)

    return read, write


def _raw_chroma(path: Path, name: str) -> tuple[Any, Any]:
    import chromadb

    client = chromadb.PersistentClient(path=str(path))

    def read() -> int:
        coll = client.get_collection(name, embedding_function=None)
        n = 0
        for offset in range(0, coll.count(), RAW_PAGE):
            got = coll.get(limit=RAW_PAGE, offset=offset, include=["embeddings"])
            np.asarray(got["embeddings"], dtype=np.float32)
            n += len(got["ids"])
        return n

    def write(ids: list[Any], vecs: np.ndarray) -> None:
        coll = client.get_collection(name, embedding_function=None)
        step = client.get_max_batch_size()
        for s in range(0, len(ids), step):
            coll.update(ids=ids[s:s + step], embeddings=vecs[s:s + step])

    return read, write


RAW = {"qdrant": _raw_qdrant, "milvus": _raw_milvus, "chroma": _raw_chroma}
LOCATION = {"qdrant": "qdrant", "milvus": "milvus.db", "chroma": "chroma"}
ID_TYPE = {"qdrant": "int", "milvus": "int", "chroma": "str"}


def measure(backend: str, n: int, dim: int, workdir: Path) -> dict[str, Any]:
    data = make_corpus(n_records=n, dim=dim, n_queries=max(2000, n // 30), seed=0, id_type=ID_TYPE[backend])
    path = workdir / LOCATION[backend]
    uri = f"{backend}://{path}?collection=bench"
    t = time.perf_counter()
    connectors.create_collection(uri, data.ids, data.vectors, metric="cosine")
    load = time.perf_counter() - t
    with connectors.open_store(uri) as store:
        store.append_log("bench_feedback", data.log_entries(("train", "val")))
        t = time.perf_counter()
        report = nudge_sync.sync(store, nudge_sync.SyncOptions(context="exact", max_changed_fraction=1.0))
        ours = time.perf_counter() - t
        written = report.written_ids
        _, new_vectors, _ = store.get_vectors(written)
    read, write = RAW[backend](path, "bench")
    t = time.perf_counter()
    assert read() == n
    raw_read = time.perf_counter() - t
    # the raw write puts the ORIGINAL vectors back: same ids, same count, a real vector-only write
    rows = {i: r for r, i in enumerate(data.ids)}
    originals = data.vectors[[rows[i] for i in written]]
    t = time.perf_counter()
    write(list(written), originals)
    raw_write = time.perf_counter() - t
    del new_vectors
    return {"backend": backend, "n": n, "dim": dim, "load_s": round(load, 1), "written": len(written),
            "raw_read_s": round(raw_read, 2), "raw_write_s": round(raw_write, 2), "sync_s": round(ours, 2),
            "ratio": round(ours / (raw_read + raw_write), 2), "timings": report.timings}


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 100_000
    dim = int(argv[2]) if len(argv) > 2 else 128
    backends = argv[3:] or ["milvus", "qdrant", "chroma"]
    rows = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-sync-{backend}-") as tmp:
            row = measure(backend, n, dim, Path(tmp))
        print(row, flush=True)
        rows.append(row)
    lines = ["| backend | records | dim | vectors written | raw read s | raw write s | sync (exact) s | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['n']:,} | {r['dim']} | {r['written']:,} | {r['raw_read_s']} | "
              f"{r['raw_write_s']} | {r['sync_s']} | {r['ratio']}x |" for r in rows]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sync.md").write_text(f"`python -m bench.bench_sync {n} {dim} {' '.join(backends)}`\n\n"
                                     + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv)
