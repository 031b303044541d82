"""Cost of Qdrant conditional writes (``version_field=``) against the plain vector-only write.

    python -m bench.bench_conditional [N_POINTS] [DIM] [REPEATS] [WORKDIR]   (default 1000 384 3, a temp dir)

On one Qdrant local-mode collection of N points (payload ``updated_at``), times re-reading and
writing every vector (1) with ``get_vectors`` + ``update_vectors`` as nudge-sync does without the
option, (2) with
``get_versioned`` + ``update_vectors_if`` when every point carries the same version (one filter
condition per call), and (3) the same when every point carries its own version (``should``
filters of (id, version) pairs, 32 points per call). The ratios are against (1), measured in the same run;
the best of REPEATS rounds each. Prints a markdown table and the load average. Local mode commits
every point to SQLite, so on a disk the fsyncs dominate: a WORKDIR on tmpfs (/dev/shm) shows what
the conditional path itself costs.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import connectors
from bench._workdir import workdir_or_temporary


def main(n: int = 1000, dim: int = 384, repeats: int = 3, workdir: str | None = None) -> str:
    from connectors.qdrant import local_client

    rng = np.random.default_rng(0)
    ids = list(range(1, n + 1))
    with workdir_or_temporary(workdir, "bench-conditional-") as work:
        path = work / "qdrant"
        uri = f"qdrant://{path}?collection=docs"
        connectors.create_collection(uri, ids, rng.standard_normal((n, dim)).astype(np.float32), metric="dot",
                                     payloads=[{"updated_at": 1} for _ in ids])
        rows = []

        def best(write) -> float:
            times = []
            for _ in range(repeats):
                vecs = rng.standard_normal((n, dim)).astype(np.float32)
                t0 = time.perf_counter()
                write(vecs)
                times.append(time.perf_counter() - t0)
            return min(times)

        with connectors.open_store(uri) as plain:
            def unconditional(v):  # the sync engine re-reads a batch right before writing it
                found, _, _ = plain.get_vectors(ids)
                plain.update_vectors(found, v, verify=False)

            base = best(unconditional)
        rows.append(("get_vectors + update_vectors (no option)", base))
        with connectors.open_store(uri + "&version_field=updated_at") as store:
            def conditional(v):
                snap = store.get_versioned(ids)
                store.update_vectors_if(snap.ids, v, snap.versions)

            rows.append(("get_versioned + update_vectors_if, one version", best(conditional)))
            with local_client(str(path)) as client:  # every point its own version
                for i in ids:
                    client.set_payload("docs", {"updated_at": 1_000_000 + i}, points=[i])
            rows.append(("get_versioned + update_vectors_if, a version per point", best(conditional)))
            got = store.get_versioned(ids[:3])
            assert got.versions == [1_000_001, 1_000_002, 1_000_003]
    load = os.getloadavg()
    out = [f"Qdrant local mode, {n} points x {dim}, best of {repeats} (load average {load[0]:.2f} {load[1]:.2f})",
           "", "| write of every vector | seconds | ratio |", "|---|---|---|"]
    out += [f"| {name} | {t:.3f} | {t / base:.2f}x |" for name, t in rows]
    return "\n".join(out)


if __name__ == "__main__":
    args = sys.argv[1:]
    print(main(*(int(a) for a in args[:3]), *args[3:4]))
