"""Chroma connector benchmark: our connector against the raw chromadb client, same run, same data.

For each harness (``chroma-persistent``: PersistentClient in this process; ``chroma-http``: a real
``chroma run`` server on a loopback port) it loads ``n`` random vectors with the raw client, then
times

* ``read_all``: every (id, vector) as float32 numpy, in pages of ``page`` records -- ours via
  ``iter_vectors`` (offset pages with the overlap check), raw via ``get(limit, offset,
  include=["embeddings"])`` pages;
* ``update``: ``n_update`` vectors -- ours via ``update_vectors`` (existence check, chunked
  ``collection.update(ids, embeddings)``, read-back verification), raw via ``collection.update`` in
  chunks of ``get_max_batch_size()``. Ours and raw update disjoint random id sets of the same size,
  in ABBA order (raw, ours, ours, raw; half the vectors each time) so neither benefits from the
  other's work nor from running first.

Run: ``python -m bench.connectors_chroma [n] [dim]`` (defaults 100,000 x 384; prints a table and
JSON rows). ``ratio`` = ours_s / raw_s; the target is <= 1.2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import connectors
from bench._workdir import workdir_or_temporary
from tests.backends.chroma import start_chroma_server


def _load(client: Any, name: str, ids: list[str], vectors: np.ndarray) -> Any:
    try:
        client.delete_collection(name)
    except Exception:
        pass
    coll = client.create_collection(name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    step = client.get_max_batch_size()
    for s in range(0, len(ids), step):
        coll.add(ids=ids[s:s + step], embeddings=vectors[s:s + step])
    return coll


def _raw_read(coll: Any, page: int) -> int:
    total = coll.count()
    seen = 0
    for offset in range(0, total, page):
        got = coll.get(limit=page, offset=offset, include=["embeddings"])
        vecs = np.asarray(got["embeddings"], dtype=np.float32)
        seen += len(got["ids"])
        assert vecs.shape[0] == len(got["ids"])
    return seen


def _raw_update(client: Any, coll: Any, ids: list[str], vectors: np.ndarray) -> None:
    step = client.get_max_batch_size()
    for s in range(0, len(ids), step):
        coll.update(ids=ids[s:s + step], embeddings=vectors[s:s + step])


def _row(harness: str, op: str, n: int, ours: float, raw: float) -> dict[str, Any]:
    return {"harness": harness, "op": op, "n": n, "ours_s": round(ours, 3), "raw_s": round(raw, 3),
            "ours_vps": round(n / ours, 1), "raw_vps": round(n / raw, 1), "ratio": round(ours / raw, 3)}


def _measure_one(harness: str, client: Any, uri: str, n: int, dim: int, n_update: int, page: int,
                 log: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    ids = [f"doc-{i:07d}" for i in range(n)]
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    t = time.perf_counter()
    coll = _load(client, "bench_chroma", ids, vectors)
    log(f"[{harness}] loaded {n} x {dim} in {time.perf_counter() - t:.1f}s")
    rows = []

    t = time.perf_counter()
    assert _raw_read(coll, page) == n
    raw = time.perf_counter() - t
    with connectors.open_store(uri) as store:
        t = time.perf_counter()
        seen = sum(len(batch) for batch, _ in store.iter_vectors(batch_size=page))
        ours = time.perf_counter() - t
    assert seen == n
    rows.append(_row(harness, "read_all", n, ours, raw))
    log(f"[{harness}] read_all ours {ours:.2f}s raw {raw:.2f}s")

    # ABBA order (raw, ours, ours, raw) over halves, so the slow drift of an HNSW index that grows
    # with every update (chroma #2594) does not favour whichever side runs first.
    pick = rng.permutation(n)
    n_update = min(n_update, n // 2)
    raw_ids = [ids[j] for j in pick[:n_update]]
    our_ids = [ids[j] for j in pick[n_update:2 * n_update]]
    new = rng.standard_normal((2 * n_update, dim)).astype(np.float32)
    half = n_update // 2
    raw = ours = 0.0
    with connectors.open_store(uri) as store:
        for side, part in (("raw", slice(0, half)), ("ours", slice(0, half)),
                           ("ours", slice(half, n_update)), ("raw", slice(half, n_update))):
            t = time.perf_counter()
            if side == "raw":
                _raw_update(client, coll, raw_ids[part], new[:n_update][part])
                raw += time.perf_counter() - t
            else:
                assert store.update_vectors(our_ids[part], new[n_update:][part]) == len(our_ids[part])
                ours += time.perf_counter() - t
    rows.append(_row(harness, "update", n_update, ours, raw))
    log(f"[{harness}] update ours {ours:.2f}s raw {raw:.2f}s")
    client.delete_collection("bench_chroma")
    return rows


def measure(n: int = 100_000, dim: int = 384, workdir: Path | None = None, *, n_update: int = 10_000,
            page: int = 1000, harnesses: tuple[str, ...] = ("chroma-persistent", "chroma-http"),
            log: Any = None) -> list[dict[str, Any]]:
    """Time reading every vector and updating ``n_update`` vectors, ours vs raw, per harness."""
    import chromadb

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows: list[dict[str, Any]] = []
    with workdir_or_temporary(workdir, "bench-chroma-") as workdir:
        if "chroma-persistent" in harnesses:
            path = workdir / "persistent"
            path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(path))
            try:
                rows += _measure_one("chroma-persistent", client, f"chroma://{path}?collection=bench_chroma",
                                     n, dim, n_update, page, log)
            finally:
                client.close()
        if "chroma-http" in harnesses:
            proc, base = start_chroma_server(workdir / "http-data", workdir)
            try:
                port = int(base.rsplit(":", 1)[1])
                client = chromadb.HttpClient(host="127.0.0.1", port=port)
                rows += _measure_one("chroma-http", client, f"chroma+{base}?collection=bench_chroma",
                                     n, dim, n_update, page, log)
                client.close()
            finally:
                proc.stop()
    return rows


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 100_000
    dim = int(argv[2]) if len(argv) > 2 else 384
    rows = measure(n, dim)
    cols = ["harness", "op", "n", "ours_s", "raw_s", "ours_vps", "raw_vps", "ratio"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv)
