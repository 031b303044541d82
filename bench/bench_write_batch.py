"""How small a write batch can be without losing throughput (issue 18: the concurrent-writer
window is one batch's re-read -> vector write, so smaller batches narrow it).

For each embedded backend and batch size: load the synthetic corpus, run ``nudge_sync.sync`` with
that ``batch_size`` and an event subscriber, and take from the events

* the ``write`` step's seconds (StepFinished) and vectors written -> vectors/s;
* each batch's window: from its ``run.before_write`` probe (the re-read done) to its ``run.write``
  probe (the vector write returned), median and max in milliseconds.

Ratios are against the largest batch size, measured in the same run on the same data.
Run: ``python -m bench.bench_write_batch [n] [dim] [backend ...]`` (defaults 5,000 x 64, all
three). Writes bench/results/write_batch.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import connectors
import nudge_sync
from nudge_sync.engine.events import Events, Probe, StepFinished
from nudge_sync.synthetic import make_corpus

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (25, 100, 250, 1000)
LOCATION = {"qdrant": "qdrant", "milvus": "milvus.db", "chroma": "chroma"}
ID_TYPE = {"qdrant": "int", "milvus": "int", "chroma": "str"}


def measure(backend: str, n: int, dim: int, batch: int, workdir: Path) -> dict[str, Any]:
    data = make_corpus(n_records=n, dim=dim, n_queries=max(600, n // 10), seed=0, id_type=ID_TYPE[backend])
    uri = f"{backend}://{workdir / LOCATION[backend]}?collection=bench"
    connectors.create_collection(uri, data.ids, data.vectors, metric="cosine")
    seen: list[Any] = []
    with connectors.open_store(uri) as store:
        store.append_log("bench_feedback", data.log_entries(("train", "val")))
        report = nudge_sync.sync(store, nudge_sync.SyncOptions(context="exact", max_changed_fraction=1.0,
                                                               batch_size=batch), events=Events([seen.append]))
    write_s = next(e.seconds for e in seen if isinstance(e, StepFinished) and e.step == "write")
    opened: list[float] = []
    windows: list[float] = []
    for e in seen:
        if isinstance(e, Probe) and e.point == "run.before_write":
            opened.append(e.time)
        elif isinstance(e, Probe) and e.point == "run.write":
            windows.append(1000 * (e.time - opened.pop(0)))
    written = report.counts["written"]
    return {"backend": backend, "batch": batch, "written": written, "write_s": round(write_s, 2),
            "per_s": round(written / write_s, 1) if write_s else 0.0,
            "window_ms_median": round(statistics.median(windows), 1) if windows else 0.0,
            "window_ms_max": round(max(windows), 1) if windows else 0.0}


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 5000
    dim = int(argv[2]) if len(argv) > 2 else 64
    backends = argv[3:] or ["chroma", "qdrant", "milvus"]
    lines = ["| backend | batch | vectors written | write step s | vectors/s | vs largest batch | "
             "window median ms | window max ms |", "|---|---|---|---|---|---|---|---|"]
    for backend in backends:
        rows = []
        for batch in SIZES:
            with tempfile.TemporaryDirectory(prefix=f"bench-batch-{backend}-") as tmp:
                rows.append(measure(backend, n, dim, batch, Path(tmp)))
            print(rows[-1], flush=True)
        base = rows[-1]["per_s"] or 1.0
        lines += [f"| {r['backend']} | {r['batch']} | {r['written']:,} | {r['write_s']} | {r['per_s']} | "
                  f"{r['per_s'] / base:.2f}x | {r['window_ms_median']} | {r['window_ms_max']} |" for r in rows]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "write_batch.md").write_text(f"`python -m bench.bench_write_batch {n} {dim} {' '.join(backends)}`\n\n"
                                            + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv)
