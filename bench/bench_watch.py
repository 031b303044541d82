"""The watcher's memory over many cycles: ``nudge_sync.watch.loop.watch`` in this process, one full
run per cycle (the store opened, synced, closed and its file let go of), on an embedded backend;
``force``, since with nothing new each cycle would end at the ``nothing_new`` gate. The resident
set size after each cycle is compared with the one after the warm-up cycles, measured in the same
run (target: flat, the last cycles' within a few MB of the warm-up's).

Run: ``python -m bench.bench_watch [cycles] [n] [backend ...]`` (defaults 40 cycles, 5,000 x 64,
milvus and chroma). Writes bench/results/watch.md.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import connectors
from nudge_sync import SyncOptions
from nudge_sync.engine.events import Event, Events, RunFailed, RunFinished
from nudge_sync.synthetic import make_corpus
from nudge_sync.watch.loop import WatchPlan, watch
from nudge_sync.watch.schedule import Schedule

from ._workdir import workdir_or_temporary

RESULTS = Path(__file__).parent / "results" / "watch.md"
WARMUP = 3
LOCATION = {"qdrant": "qdrant", "milvus": "milvus.db", "chroma": "chroma"}
ID_TYPE = {"qdrant": "int", "milvus": "int", "chroma": "str"}


def rss_mb() -> float:
    """Resident set size now (not the peak): /proc/self/statm's second field, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def measure(backend: str, cycles: int, n: int, workdir: Path) -> dict[str, Any]:
    data = make_corpus(n_records=n, dim=64, n_queries=max(500, n // 10), seed=0, id_type=ID_TYPE[backend])
    uri = f"{backend}://{workdir / LOCATION[backend]}?collection=bench"
    connectors.create_collection(uri, data.ids, data.vectors, metric="cosine")
    with connectors.open_store(uri) as store:
        store.append_log("bench_feedback", data.log_entries(("train", "val")))
    connectors.release_embedded(uri)
    samples: list[float] = []
    outcomes: list[str] = []

    def after_run(event: Event) -> None:
        if isinstance(event, (RunFinished, RunFailed)):
            outcomes.append(getattr(event, "status", "failed"))

    plan = WatchPlan(store=uri, options=SyncOptions(log="bench_feedback", max_changed_fraction=1.0, force=True),
                     schedule=Schedule(every=0.05), max_cycles=cycles)
    code = watch(plan, Events([after_run]), threading.Event(), on_cycle=lambda: samples.append(rss_mb()))
    base = samples[WARMUP - 1]
    return {"backend": backend, "cycles": len(samples), "exit": code, "first": samples[0], "warm": base,
            "last": samples[-1], "max": max(samples[WARMUP:]), "growth": samples[-1] - base,
            "per_cycle_kb": (samples[-1] - base) * 1024 / max(1, len(samples) - WARMUP),
            "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))}}


def main(argv: list[str]) -> None:
    cycles = int(argv[0]) if argv else 40
    n = int(argv[1]) if len(argv) > 1 else 5_000
    backends = argv[2:] or ["milvus", "chroma"]
    rows = []
    for backend in backends:
        with workdir_or_temporary(None, f"bench-watch-{backend}-") as workdir:
            r = measure(backend, cycles, n, workdir)
        rows.append(r)
        print(r, flush=True)
    lines = [f"# Watcher memory over {cycles} cycles ({n:,} records x 64, one full run per cycle)", "",
             f"`python -m bench.bench_watch {cycles} {n} {' '.join(backends)}`; RSS after each cycle, MB; "
             f"'warm' is after cycle {WARMUP}.", "",
             "| backend | cycles | after cycle 1 | warm | last | max after warm | growth | per cycle | runs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['cycles']} | {r['first']:.1f} | {r['warm']:.1f} | {r['last']:.1f} | "
                     f"{r['max']:.1f} | {r['growth']:+.1f} MB | {r['per_cycle_kb']:+.0f} kB | {r['outcomes']} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
