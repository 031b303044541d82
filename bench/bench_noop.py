"""What a night with nothing new costs: a no-op ``nudge-sync run`` (its own process, as cron starts
it) on a small and a large Milvus Lite collection, measured in the same run, with the ratio
large/small of its wall time and peak RSS (target: about 1, whatever the collection's size).

Each size: the collection (64-d, cosine) and a 2,000-query log are loaded, one real run writes
and records (``first``), then the no-op run is timed ``REPEATS`` times (its median), and one
``--force`` run (the full read and fit every night cost before the ``nothing_new`` gate) once.
Peak RSS is the process' own high-water mark (VmHWM); CPU its user + system seconds.

Run: ``python -m bench.bench_noop [small] [large] [--workdir DIR]`` (defaults 10,000 and 1,000,000).
A ``--workdir`` that already holds a size's database (from an earlier run of this benchmark) is
reused: no load and no first run. Writes bench/results/noop.md.
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


#: ``nudge-sync`` in a process that writes its own peak RSS (kB) to stderr as it exits: VmHWM, the
#: high-water mark of its own memory (``ru_maxrss`` is not: Linux carries the forking parent's
#: resident set over into it, here the benchmark's, which holds the corpus)
SELF_RSS = ("import atexit, sys; from pathlib import Path; from nudge_sync.cli import main; "
            "hwm = lambda: next(l.split()[1] for l in Path('/proc/self/status').read_text().splitlines() "
            "if l.startswith('VmHWM:')); "
            "atexit.register(lambda: sys.stderr.write(f'\\nMAXRSS {hwm()}\\n')); "
            "sys.argv[0] = 'nudge-sync'; main()")


def cli(uri: str, *args: str) -> dict[str, Any]:
    """``nudge-sync --json -q run --store URI ARGS`` in its own process: exit code, wall seconds, CPU
    seconds (user + system, its threads and children included: Milvus Lite's engine runs in it), its
    peak RSS in MB, and the report."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", SELF_RSS, "--json", "-q", "run", "--store", uri, *args],
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    own = [line.split()[1] for line in errors.splitlines() if line.startswith("MAXRSS ")]
    return {"code": proc.returncode, "seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": int(own[-1]) / 1024 if own else float("nan"), "report": json.loads(text) if text.strip() else {}}


def measure(n: int, workdir: Path) -> dict[str, Any]:
    """Load ``n`` records, run once, then time the no-op and a forced run."""
    db = workdir / f"noop{n}.db"
    uri = f"milvus://{db}?collection=bench"
    args = ("--log", "bench_feedback", "--max-changed-fraction", "1")
    if db.exists():  # loaded and run by an earlier run of this benchmark
        load, first = None, None
    else:
        data = make_corpus(n_records=n, dim=DIM, n_queries=QUERIES, seed=0, id_type="int")
        began = time.perf_counter()
        connectors.create_collection(uri, data.ids, data.vectors, metric="cosine")
        with connectors.open_store(uri) as store:
            store.append_log("bench_feedback", data.log_entries(("train", "val")))
        connectors.release_embedded(uri)
        load = time.perf_counter() - began
        del data
        first = cli(uri, *args)
        assert first["code"] == 0 and first["report"].get("status") == "written", first
    noops = [cli(uri, *args) for _ in range(REPEATS)]
    assert all(r["code"] == 3 and "nothing new" in r["report"].get("reason", "") for r in noops), noops
    forced = cli(uri, *args, "--force")
    assert forced["code"] == 0 and forced["report"].get("status") == "unchanged", forced
    noop = sorted(noops, key=lambda r: r["seconds"])[REPEATS // 2]  # the median
    return {"n": n, "load": load, "first": first, "forced": forced, "noop": noop,
            "noop_rss": max(r["rss"] for r in noops)}


def table(rows: list[dict[str, Any]], command: str) -> str:
    small, large = rows[0], rows[-1]
    lines = [
        f"# No-op nights (bench/bench_noop.py)\n\nCommand: `{command}`\n",
        "Milvus Lite, 64-d cosine, a 2,000-query log. Each `nudge-sync run` is its own process: wall time "
        "includes the interpreter's start and Milvus Lite's (an in-process engine: its memory and CPU are "
        "the process'); CPU is user + system seconds; RSS is the process' peak (VmHWM). No-op: the run "
        f"of median wall time of {REPEATS} (RSS: the largest). `--force`: the full read and fit every night "
        "cost before the `nothing_new` gate, on the same inputs.\n",
        "| records | load (s) | first run (s) | `--force` run: wall s / CPU s / RSS MB | "
        "no-op run: wall s / CPU s / RSS MB |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        f, o = r["forced"], r["noop"]
        load = "reused" if r["load"] is None else f"{r['load']:.0f}"
        first = "reused" if r["first"] is None else f"{r['first']['seconds']:.1f}"
        lines.append(f"| {r['n']:,} | {load} | {first} | "
                     f"{f['seconds']:.1f} / {f['cpu']:.1f} / {f['rss']:.0f} | "
                     f"{o['seconds']:.1f} / {o['cpu']:.1f} / {r['noop_rss']:.0f} |")
    ratio = lambda key, a, b: b[key] / a[key]  # noqa: E731
    lines.append(f"\nRatio large/small ({large['n']:,} / {small['n']:,} records), measured in the same run: no-op "
                 f"wall time x{ratio('seconds', small['noop'], large['noop']):.2f}, CPU "
                 f"x{ratio('cpu', small['noop'], large['noop']):.2f}, peak RSS x{large['noop_rss'] / small['noop_rss']:.2f}; "
                 f"a `--force` run: x{ratio('seconds', small['forced'], large['forced']):.1f} wall, "
                 f"x{ratio('cpu', small['forced'], large['forced']):.1f} CPU, "
                 f"x{ratio('rss', small['forced'], large['forced']):.1f} RSS.\n")
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
            print({k: (v["seconds"], v["cpu"], v["rss"]) if isinstance(v, dict) else v
                   for k, v in rows[-1].items()}, flush=True)
    text = table(rows, "python -m bench.bench_noop " + " ".join(str(n) for n in sizes))
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
