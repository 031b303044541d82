"""Peak memory of ``nudge-sync feedback import`` against the size of the file (issue 18, finding 7).

For each backend (``chroma-http``: a real ``chroma run`` server on a loopback port; ``milvus-lite``:
Milvus Lite embedded, file ``lite.db``) it creates a 1,000-record collection, generates a JSONL log
of ``--entries`` entries on the fly (written line by line, never held), and runs the real
``nudge-sync feedback import`` console script as its own process, reading its peak resident memory
from the kernel: its own high-water mark (``VmHWM``, polled while it runs) and ``wait4``'s
``ru_maxrss`` (the importer and the children it waited for: Milvus Lite's engine process; a Chroma
server is not its child). The baseline, measured in the same run on the same backend, is the import
of a ``--baseline``-entry file: ``ratio`` = peak RSS of the big import / peak RSS of the small one
(bounded memory: close to 1 however large the file). It also counts the log's entries with the
database's own client.

Run here (a shared machine): ``python -m bench.bench_import --entries 100000``. The figures of
the README: ``nice -n 10 python -m bench.bench_import --entries 1000000 --baseline 100000 --dim 64
--backends milvus-lite`` (a 1.3 GB JSONL file; 33 minutes on Milvus Lite on this shared 2-core
machine under a load of 12-14), and the same with ``--backends chroma-http`` (see
``bench/results/import.md`` for how long). Each import is printed as it finishes; the table is
appended to ``bench/results/import.md`` at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import connectors
from bench._workdir import workdir_or_temporary

NUDGE_SYNC = Path(sys.executable).parent / "nudge-sync"
RECORDS = 1000
RESULTS = Path(__file__).parent / "results" / "import.md"


def write_log(path: Path, entries: int, dim: int, str_ids: bool, seed: int = 0) -> int:
    """A JSONL log of ``entries`` queries answered by records 0..RECORDS-1, written in chunks."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, entries, 10_000):
            n = min(10_000, entries - start)
            vecs = rng.standard_normal((n, dim)).astype(np.float32)
            answers = rng.integers(RECORDS, size=n)
            f.write("".join(json.dumps({"query_id": f"q{start + i}", "vector": vecs[i].tolist(),
                                        "relevant_ids": [str(answers[i]) if str_ids else int(answers[i])], "timestamp": 1.7e9 + start + i})
                            + "\n" for i in range(n)))
    return path.stat().st_size


def import_peak(uri: str, path: Path, log: str) -> tuple[float, float, float, dict[str, Any]]:
    """(the importer's own peak RSS, peak RSS with the children it waited for, both MiB; seconds;
    report) of one ``nudge-sync --json feedback import`` process. The own peak is the kernel's
    high-water mark (``VmHWM``) read while it runs; Milvus Lite's engine is a child process whose
    memory holds the data, so only the first says whether the importer's memory is bounded."""
    started = time.monotonic()
    own = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([str(NUDGE_SYNC), "--json", "-q", "feedback", "import", "--store", uri, "--log", log,
                                 "--stream", str(path)], stdout=out, stderr=err)
        while True:
            own = max(own, _high_water_kib(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break  # reaped here, with its resource usage
            time.sleep(0.1)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise SystemExit(f"import failed ({code}): {err.read().decode(errors='replace')[-2000:]}")
        report = json.loads(out.read())
    return own / 1024, usage.ru_maxrss / 1024, seconds, report  # KiB on Linux


def _high_water_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):  # exited meanwhile
        pass
    return 0


def measure(backend: str, uri: str, count: Any, workdir: Path, entries: int, baseline: int, dim: int,
            str_ids: bool = False) -> dict[str, Any]:
    rows: dict[str, Any] = {"backend": backend, "entries": entries, "dim": dim}
    for label, n in (("baseline", baseline), ("big", entries)):
        path = workdir / f"log-{n}.jsonl"
        size = path.stat().st_size if path.exists() else write_log(path, n, dim, str_ids)
        log = f"imported_{label}"
        rss, with_children, seconds, report = import_peak(uri, path, log)
        assert report["appended"] == n and report["unknown_id_count"] == 0, report
        stored = count(log)
        assert stored == n, f"{backend}: {stored} entries in the log after importing {n}"
        rows[label] = {"entries": n, "file_mb": round(size / 2**20, 1), "peak_rss_mb": round(rss, 1),
                       "with_children_mb": round(with_children, 1),
                       "seconds": round(seconds, 1), "stored": stored}
        print(json.dumps({"backend": backend, label: rows[label]}), flush=True)  # a long run's progress
    rows["ratio"] = round(rows["big"]["peak_rss_mb"] / rows["baseline"]["peak_rss_mb"], 2)
    return rows


def chroma_http(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import chromadb

    from tests.backends.chroma import start_chroma_server

    proc, base = start_chroma_server(workdir / "chroma-data", workdir)
    try:
        uri = f"chroma+{base}?collection=docs"
        vectors = np.random.default_rng(1).standard_normal((RECORDS, args.dim))
        connectors.create_collection(uri, [str(i) for i in range(RECORDS)], vectors, metric="cosine")
        host, port = base.rsplit(":", 1)
        client = chromadb.HttpClient(host=host.removeprefix("http://"), port=int(port))
        return measure("chroma-http", uri, lambda log: client.get_collection(log).count(), workdir, args.entries,
                       args.baseline, args.dim, str_ids=True)
    finally:
        proc.stop()


def milvus_lite(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    db = workdir / "lite.db"
    uri = f"milvus://{db}?collection=docs"
    vectors = np.random.default_rng(1).standard_normal((RECORDS, args.dim))
    connectors.create_collection(uri, list(range(RECORDS)), vectors, metric="cosine")

    def count(log: str) -> int:
        from milvus_lite.server_manager import server_manager_instance
        from pymilvus import MilvusClient

        client = MilvusClient(str(db))
        try:
            client.load_collection(log)
            return int(client.query(log, filter="", output_fields=["count(*)"])[0]["count(*)"])
        finally:
            client.close()
            server_manager_instance.release_server(str(db))  # the next nudge-sync process opens the file

    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(db))  # create_collection's client holds the file
    return measure("milvus-lite", uri, count, workdir, args.entries, args.baseline, args.dim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--backends", default="chroma-http,milvus-lite")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    runners = {"chroma-http": chroma_http, "milvus-lite": milvus_lite}
    rows = []
    for name in args.backends.split(","):
        with workdir_or_temporary(args.workdir and Path(args.workdir) / name, f"bench-import-{name}-") as wd:
            wd.mkdir(parents=True, exist_ok=True)
            rows.append(runners[name](wd, args))
            print(json.dumps(rows[-1]), flush=True)
    lines = ["", f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `python -m bench.bench_import "
             f"--entries {args.entries} --baseline {args.baseline} --dim {args.dim} --backends {args.backends}`", "",
             "| backend | entries | file | importer's peak RSS | with children | time | baseline (entries, file, "
             "peak RSS, with children) | ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, g = r["baseline"], r["big"]
        lines.append(f"| {r['backend']} | {g['entries']:,} | {g['file_mb']} MiB | {g['peak_rss_mb']} MiB | "
                     f"{g['with_children_mb']} MiB | {g['seconds']} s | {b['entries']:,}, {b['file_mb']} MiB, "
                     f"{b['peak_rss_mb']} MiB, {b['with_children_mb']} MiB | {r['ratio']} |")
    print("\n".join(lines))
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write("# `feedback import`: peak memory against file size (bench/bench_import.py)\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
