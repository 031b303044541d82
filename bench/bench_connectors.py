"""Connector overhead on the embedded backends: our read of every vector and our vector update,
next to the raw client doing the same in the same run (target: ours / raw <= 1.2).

``read``: ``iter_vectors`` vs the raw client's paged read (both produce float32 arrays).
``update``: ``update_vectors`` (existence check, vector-only write, read-back verification) and
``update_vectors(verify=False)`` (no read-back: how the sync engine writes, since it reads every
written vector back itself) vs the raw client's vector-only write of the same number of records
(disjoint ids), each side half its ids in one order and half in the reverse order.
Chroma's own, more detailed benchmark (including the HTTP server) is bench/connectors_chroma.py.

Run: ``python -m bench.bench_connectors [n] [dim] [n_update] [backend ...]``
(defaults 100,000 x 384, 5,000 updates, qdrant milvus chroma). Writes bench/results/connectors.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import connectors
from bench.bench_sync import ID_TYPE, LOCATION, RAW, RESULTS


def measure(backend: str, n: int, dim: int, n_update: int, workdir: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    ids = [1 + 7 * i for i in range(n)] if ID_TYPE[backend] == "int" else [f"doc-{i:07d}" for i in range(n)]
    path = workdir / LOCATION[backend]
    uri = f"{backend}://{path}?collection=bench"
    connectors.create_collection(uri, ids, vectors, metric="dot")
    raw_read, raw_write = RAW[backend](path, "bench")
    rows = []
    with connectors.open_store(uri) as store:
        t = time.perf_counter()
        assert raw_read() == n
        raw = time.perf_counter() - t
        t = time.perf_counter()
        assert sum(len(b) for b, _ in store.iter_vectors(batch_size=1000)) == n
        ours = time.perf_counter() - t
        rows.append({"backend": backend, "op": "read all", "n": n, "ours_s": ours, "raw_s": raw})
        # three disjoint id sets: the raw client, ours with read-back verification (the default),
        # ours with verify=False (how the sync engine writes: it reads every vector back itself)
        pick = rng.permutation(n)[: 3 * n_update]
        sides = {"raw": 0.0, "verified": 0.0, "unverified": 0.0}
        sets = {side: [ids[j] for j in pick[k * n_update:(k + 1) * n_update]] for k, side in enumerate(sides)}
        new = rng.standard_normal((n_update, dim)).astype(np.float32)
        half = n_update // 2
        # each side writes half its ids in one order, then the other half in the reverse order
        order = [(side, slice(0, half)) for side in sides] + [(side, slice(half, n_update)) for side in reversed(sides)]
        for side, part in order:
            t = time.perf_counter()
            if side == "raw":
                raw_write(sets[side][part], new[part])
            else:
                store.update_vectors(sets[side][part], new[part], verify=side == "verified")
            sides[side] += time.perf_counter() - t
        rows.append({"backend": backend, "op": "update (verified)", "n": n_update, "ours_s": sides["verified"],
                     "raw_s": sides["raw"]})
        rows.append({"backend": backend, "op": "update (verify=False)", "n": n_update,
                     "ours_s": sides["unverified"], "raw_s": sides["raw"]})
    return rows


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 100_000
    dim = int(argv[2]) if len(argv) > 2 else 384
    n_update = int(argv[3]) if len(argv) > 3 else 5_000
    backends = argv[4:] or ["qdrant", "milvus", "chroma"]
    rows = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-conn-{backend}-") as tmp:
            rows += measure(backend, n, dim, n_update, Path(tmp))
        print(rows[-3:], flush=True)
    lines = ["| backend | operation | records | ours vectors/s | raw client vectors/s | ours / raw time |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['op']} | {r['n']:,} | {r['n'] / r['ours_s']:,.0f} | {r['n'] / r['raw_s']:,.0f} | "
              f"{r['ours_s'] / r['raw_s']:.2f}x |" for r in rows]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "connectors.md").write_text(
        f"`python -m bench.bench_connectors {n} {dim} {n_update} {' '.join(backends)}`\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv)
