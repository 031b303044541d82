"""What ``plan --out`` / ``apply`` cost next to a plain run, on the in-memory store (the write
path is the run's own, so the difference is the plan file: its size, writing and checking it).

For one synthetic corpus (``nudge_sync.synthetic``, ``n`` records x ``dim``), on two identical
``memory://`` databases: ``sync`` (exact context) on the first; ``sync`` dry run with
``plan_out`` then ``apply_plan`` on the second. Checks that both end with the same vectors, bit
for bit, and prints the seconds of each and the plan file's size.

Run: ``python -m bench.bench_apply [n] [dim]`` (defaults 20,000 x 128).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


import connectors
import nudge_sync
from nudge_sync.engine.apply import apply_plan
from nudge_sync.engine.planfile import load_plan
from nudge_sync.synthetic import make_corpus


def main(n: int = 20_000, dim: int = 128) -> str:
    data = make_corpus(n_records=n, dim=dim, n_queries=max(2000, n // 30), seed=0, id_type="int")
    opts = nudge_sync.SyncOptions(context="exact", max_changed_fraction=1.0)
    stores = []
    for name in ("run", "plan"):
        uri = f"memory://bench-apply-{name}?collection=bench"
        connectors.create_collection(uri, data.ids, data.vectors, metric="cosine")
        store = connectors.open_store(uri)
        store.append_log("bench_feedback", data.log_entries(("train", "val")))
        stores.append(store)
    t = time.perf_counter()
    ran = nudge_sync.sync(stores[0], opts)
    run_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        t = time.perf_counter()
        nudge_sync.sync(stores[1], replace(opts, dry_run=True), plan_out=path)
        plan_s = time.perf_counter() - t
        size = path.stat().st_size
        t = time.perf_counter()
        doc = load_plan(path)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        applied = apply_plan(stores[1], doc)
        apply_s = time.perf_counter() - t
    a, b = (dict(zip(*s.get_vectors(ran.written_ids)[:2])) for s in stores)
    same = all(a[i].tobytes() == b[i].tobytes() for i in ran.written_ids)
    assert same and applied.counts["written"] == ran.counts["written"], "apply did not write what the run wrote"
    k = len(doc.records)
    return (f"n={n:,} dim={dim}: {k:,} records written by both; run {run_s:.2f} s; plan --out {plan_s:.2f} s "
            f"(file {size / 1e6:.1f} MB, {size / max(k, 1):,.0f} B/record); load+check {load_s:.2f} s; "
            f"apply {apply_s:.2f} s; vectors identical: {same}")


if __name__ == "__main__":
    print(main(*(int(a) for a in sys.argv[1:3])))
