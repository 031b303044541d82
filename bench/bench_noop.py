"""What a night with nothing new costs: a no-op ``nudge-sync run`` (its own process, as cron starts
it) on a small and a large Milvus Lite collection, measured in the same run, with the ratio
large/small of its wall time and peak RSS (target: about 1, whatever the collection's size).

Each size: the collection (64-d, cosine) and a 2,000-query log are loaded, one real run writes
and records (``first``), then the no-op run is timed ``REPEATS`` times (its median), and one
``--force`` run (the full read and fit every night cost before the ``nothing_new`` gate) once.
Peak RSS is the child's ``ru_maxrss`` (``os.wait4``); wall time includes the interpreter's start.

Run: ``python -m bench.bench_noop [small] [large] [--workdir DIR]`` (defaults 10,000 and 1,000,000).
Writes bench/results/noop.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import connectors
from nudge_sync.synthetic import make_corpus

from ._workdir import workdir_or_temporary

RESULTS = Path(__file__).parent / "results" / "noop.md"
DIM, QUERIES, REPEATS = 64, 2_000, 3


#: ``nudge-sync`` in a process that writes its own peak RSS (KB) to stderr as it exits
SELF_RSS = ("import atexit, resource, sys; from nudge_sync.cli import main; "
            "atexit.register(lambda: sys.stderr.write(f'\\nMAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')); "
            "sys.argv[0] = 'nudge-sync'; main()")


def cli(uri: str, *args: str) -> dict[str, Any]:
    """``nudge-sync --json -q run --store URI ARGS`` in its own process: exit code, seconds, peak RSS
    of the nudge-sync process itself and of its whole process tree (Milvus Lite's server is a child
    process: its memory is the database's), in MB, and the report."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", SELF_RSS, "--json", "-q", "run", "--store", uri, *args],
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss: the largest of the process and its children
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    own = [line.split()[1] for line in errors.splitlines() if line.startswith("MAXRSS ")]
    return {"code": proc.returncode, "seconds": seconds, "rss": int(own[-1]) / 1024 if own else float("nan"),
            "tree_rss": usage.ru_maxrss / 1024, "report": json.loads(text) if text.strip() else {}}


def measure(n: int, workdir: Path) -> dict[str, Any]:
    """Load ``n`` records, run once, then time the no-op and a forced run."""
    uri = f"milvus://{workdir / f'noop{n}.db'}?collection=bench"
    data = make_corpus(n_records=n, dim=DIM, n_queries=QUERIES, seed=0, id_type="int")
    began = time.perf_counter()
    connectors.create_collection(uri, data.ids, data.vectors, metric="cosine")
    with connectors.open_store(uri) as store:
        store.append_log("bench_feedback", data.log_entries(("train", "val")))
    connectors.release_embedded(uri)
    load = time.perf_counter() - began
    del data
    args = ("--log", "bench_feedback", "--max-changed-fraction", "1")
    first = cli(uri, *args)
    assert first["code"] == 0 and first["report"].get("status") == "written", first
    noops = [cli(uri, *args) for _ in range(REPEATS)]
    assert all(r["code"] == 3 and "nothing new" in r["report"].get("reason", "") for r in noops), noops
    forced = cli(uri, *args, "--force")
    assert forced["code"] == 0 and forced["report"].get("status") == "unchanged", forced
    noop = sorted(noops, key=lambda r: r["seconds"])[REPEATS // 2]  # the median
    return {"n": n, "load": load, "first": first, "forced": forced, "noop": noop,
            "noop_rss": max(r["rss"] for r in noops), "noop_tree_rss": max(r["tree_rss"] for r in noops)}


def table(rows: list[dict[str, Any]], command: str) -> str:
    small, large = rows[0], rows[-1]
    lines = [
        f"# No-op nights (bench/bench_noop.py)\n\nCommand: `{command}`\n",
        "Milvus Lite, 64-d cosine, a 2,000-query log. Each `nudge-sync run` is its own process; wall time "
        "includes the interpreter's start and Milvus Lite's. RSS: peak of the nudge-sync process itself "
        "(its tree's, with Milvus Lite's server process, in brackets). No-op: median of "
        f"{REPEATS} (RSS: the largest).\n",
        "| records | load (s) | first run (s) | `--force` run, nothing new (s) | `--force` RSS (MB) | "
        "no-op run (s) | no-op RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, o = r["forced"], r["noop"]
        lines.append(f"| {r['n']:,} | {r['load']:.0f} | {r['first']['seconds']:.1f} | {f['seconds']:.1f} | "
                     f"{f['rss']:.0f} ({f['tree_rss']:.0f}) | {o['seconds']:.2f} | "
                     f"{r['noop_rss']:.0f} ({r['noop_tree_rss']:.0f}) |")
    lines.append(f"\nRatio large/small ({large['n']:,} / {small['n']:,} records), measured in the same run: no-op "
                 f"wall time x{large['noop']['seconds'] / small['noop']['seconds']:.2f}, no-op RSS "
                 f"x{large['noop_rss'] / small['noop_rss']:.2f} (tree x{large['noop_tree_rss'] / small['noop_tree_rss']:.2f}); "
                 f"a `--force` run: x{large['forced']['seconds'] / small['forced']['seconds']:.1f} time, "
                 f"x{large['forced']['rss'] / small['forced']['rss']:.1f} RSS.\n")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    workdir = None
    if "--workdir" in argv:
        at = argv.index("--workdir")
        workdir, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    sizes = [int(a) for a in argv] or [10_000, 1_000_000]
    with workdir_or_temporary(workdir, "bench-noop-") as tmp:
        rows = []
        for n in sizes:
            rows.append(measure(n, tmp))
            print({k: (v["seconds"], v["rss"], v["tree_rss"]) if isinstance(v, dict) else v
                   for k, v in rows[-1].items()}, flush=True)
    text = table(rows, "python -m bench.bench_noop " + " ".join(str(n) for n in sizes))
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
