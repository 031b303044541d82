"""Concurrent-writer loss rate and window per backend (issue 18, item 4).

    python -m bench.bench_writer_race [--trials N] [--server-trials M] [--backends a,b] [--chase] [--no-adds]
                                      [--out FILE] [WORKDIR]

(defaults: 8 trials per embedded backend, 5 per server, all six backends; results and the exact
commands of the last measurement: bench/results/writer_race.md)

Each trial: a fresh collection of the user-level suite (tests/user/_data.make_collection: 300
records, 16-d unit vectors, dot metric, its feedback imported by ``nudge-sync``), an application
re-embedding one record every 50 ms (half of them records the run nudges; every 5th write adds a
record) with the database's own client (tests/user/_writer.py, ``free`` mode), and one
``nudge-sync run --batch-size 10`` traced with ``NUDGE_SYNC_TRACE``; ``--chase``: the application
also re-embeds one record of every batch as soon as the trace shows the batch's originals saved
(aiming at the window). Afterwards the collection is
read back with the database's own client: an application write is LOST when the record no longer
holds the application's last vector and nudge-sync's state does not keep that vector as the
record's original (a record re-embedded before the run read it is nudged from the application's
vector: counted apart, not lost). Each lost write is placed against the run's batches from the
trace: ``run.save`` (state written; the re-read starts) -> ``run.before_write`` (re-read done;
the write call starts) -> ``run.write`` (write acknowledged).

The window per batch is reported two ways: re-read -> ack (``save`` -> ``write``: a write landing
after the re-read read the record and before ours was applied is overwritten) and the write call
alone (``before_write`` -> ``write``).

The application is a separate process where the database admits one (Chroma persistent and
server, Milvus Lite server, Milvus 2.3.5). Milvus Lite and Qdrant local mode lock their files for
one process, so there the application is a thread of the process that runs nudge-sync in-process
(the CLI's click app, same arguments), sharing the Qdrant local client / Milvus Lite engine.
Servers are started once per backend with the test fixtures' helpers and stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench._workdir import workdir_or_temporary

BACKENDS = ("chroma-persistent", "milvus-lite", "qdrant-local", "chroma-http", "milvus-lite-server", "milvus-2.3.5")
IN_PROCESS = ("milvus-lite", "qdrant-local")  # one process per path: the application is a thread
BATCH = 10
INTERVAL = 0.05
#: every n-th application write adds a record (--no-adds: never)
ADD_EVERY = 5
#: --chase: the application also re-embeds one record of each batch as soon as the trace shows the
#: batch's originals saved (its re-read and write under way)
CHASE = False


@contextmanager
def open_backend(name: str, work: Path) -> Iterator[Any]:
    """A tests/user UserBackend for ``name``; servers started here and stopped by PID on exit."""
    from tests.user._native import SharedServerBackend, embedded_backend

    if name in ("chroma-persistent", "milvus-lite", "qdrant-local"):
        yield embedded_backend(name, work / "db")
        return
    with ExitStack() as stack:
        if name == "chroma-http":
            from tests.backends.chroma import ChromaHarness

            h = ChromaHarness.http(work / "chroma-data", work)
        elif name == "milvus-lite-server":
            from tests.backends.milvus import MilvusHarness, start_milvus_lite_server, stop_server

            proc, uri = start_milvus_lite_server(work / "lite-data", work)
            stack.callback(stop_server, proc)
            h = MilvusHarness(name, uri, f"milvus+{uri}", is_server=True)
        else:
            from tests.backends.milvus import (ROOT_TOKEN, TEST_TIME_TICK_MS, MilvusHarness, _strong_root_password,
                                               start_milvus_server, stop_server)

            proc, uri, token = start_milvus_server(work / "m235", work, time_tick_ms=TEST_TIME_TICK_MS)
            stack.callback(stop_server, proc)
            token = _strong_root_password(uri, token or ROOT_TOKEN)
            token_file = work / "token"
            token_file.write_text(token)
            token_file.chmod(0o600)
            h = MilvusHarness(name, uri, f"milvus+{uri}", is_server=True, token=token, token_file=token_file)
        stack.callback(h.close)
        yield SharedServerBackend(h)


def app_config(b: Any, coll: Any, candidates: list[Any], log: Path, stop: Path, trace: Path) -> dict[str, Any]:
    from tests.backends.chroma import chroma_name
    from tests.user._data import DIM

    if b.name == "chroma-persistent":
        where = {"backend": "chroma", "path": str(Path(b.path).resolve())}
    elif b.name == "milvus-lite":
        where = {"backend": "milvus", "url": str(b.path)}
    elif b.name == "qdrant-local":
        where = {"backend": "qdrant", "path": str(b.path), "vector": "text" if coll.name in b._named else None}
    else:
        where = b.app_config()
    name = chroma_name(coll.name) if b.backend == "chroma" else coll.name
    return {**where, "collection": name, "dim": DIM, "mode": "free", "candidates": candidates, "log": str(log),
            "stop": str(stop), "interval": INTERVAL, "add_every": ADD_EVERY, "seed": 7,
            "id_type": "str" if isinstance(coll.ids[0], str) else "int", "chase": str(trace) if CHASE else None}


def run_in_process(args: list[str], env: dict[str, str]) -> tuple[int, int, str]:
    """``nudge-sync ARGS`` through the click app in this process; (exit code, pid, output)."""
    from nudge_sync.cli.app import cli

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    code, out = 0, StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(out):
            try:
                cli.main(args=args, prog_name="nudge-sync", obj={}, standalone_mode=True)
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, os.getpid(), out.getvalue()


def trial(b: Any, k: int, work: Path, candidates: list[Any] | None) -> dict[str, Any]:
    """One collection, one application, one traced ``nudge-sync run``."""
    from tests.user._data import make_collection, reference
    from tests.user._probes import read_trace
    from tests.user._runner import nudge
    from tests.user.test_concurrency import lost, wait_for_lines

    d = work / f"t{k}"
    d.mkdir(parents=True, exist_ok=True)
    coll = make_collection(b, f"race{k}", d, metric="dot")
    if candidates is None:  # half the re-embeds hit records the run nudges, half the rest
        written = reference(coll, d).written
        candidates = sorted(written, key=repr) + sorted(set(coll.ids) - written, key=repr)[:len(written)]
    log, stop, trace = d / "app.jsonl", d / "stop", d / "run.trace"
    cfg = app_config(b, coll, candidates, log, stop, trace)
    args = ["--json", "-q", "run", "--store", coll.uri, "--batch-size", str(BATCH)]
    env = {"NUDGE_SYNC_TRACE": str(trace)}
    if b.name in IN_PROCESS:
        from tests.user import _writer

        app = _writer.App(cfg)
        thread = threading.Thread(target=_writer.free, args=(app, cfg), daemon=True)
        thread.start()
        while not (log.exists() and len(log.read_text().splitlines()) >= 3):
            time.sleep(0.05)
        try:
            code, pid, said = run_in_process(args, env)
        finally:
            stop.touch()
            thread.join(60)
            close = getattr(app.db, "close", None) or getattr(getattr(app.db, "client", None), "close", None)
            if close:
                close()
            if b.name == "milvus-lite":
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(b.path))
    else:
        proc = subprocess.Popen([sys.executable, "-m", "tests.user._writer", json.dumps(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_lines(log, proc, 3)
            result = nudge(*args[2:], env=env, expect=None)
            code, pid, said = result.code, result.pid, result.stderr
        finally:
            stop.touch()
            _, err = proc.communicate(timeout=60)
        if proc.returncode:
            raise RuntimeError(f"the application process failed: {err[-2000:]}")
    writes = [json.loads(line) for line in log.read_text().splitlines()]
    vectors, _ = b.read(coll.name)
    events = [e for e in read_trace(trace) if e["pid"] == pid]
    batches = batch_times(events)
    last = {w["id"]: w for w in sorted(writes, key=lambda w: w["t1"])}
    losses = [{**place(i, last[i], batches), "holds": holds(i, vectors, coll, writes, last[i]),
               "t0-run.read_ms": round(1e3 * (last[i]["t0"] - next((e["t"] for e in events if e["point"] == "run.read"),
                                                                 float("nan"))), 1)}
              for i in lost(writes, vectors)]
    if losses:
        base = state_originals(b, coll, [x["id"] for x in losses])
        for x in losses:
            app_vec = np.asarray(last[x["id"]]["vector"], np.float32).tobytes()
            x["lost"] = base.get(x["id"]) != app_vec  # nudged FROM the app's vector: the app's write was read
            x["state original"] = ("the application's last vector" if not x["lost"] else
                                   "none" if x["id"] not in base else "another vector")
    b.drop_all(coll.name)
    if code:
        print(f"{b.name} trial {k}: nudge-sync run exited {code}: {said[-1500:]}", file=sys.stderr, flush=True)
    said = " ".join(said.split())[-600:] if code else ""
    return {"trial": k, "code": code, "said": said, "chased": sum(bool(w.get("chased")) for w in writes), "writes": len(writes), "losses": losses, "batches": batches,
            "candidates": candidates}


def state_originals(b: Any, coll: Any, ids: list[Any]) -> dict[Any, bytes]:
    """The originals nudge-sync's state keeps for ``ids`` (read with nudge-sync's own state code:
    whether a run nudged the application's vector, i.e. had read it, or overwrote it)."""
    import connectors
    from nudge_sync.engine.state import SyncState
    from tests.backends.chroma import chroma_name

    name = chroma_name(coll.name) if b.backend == "chroma" else coll.name
    try:
        with connectors.open_store(coll.uri) as store:
            got = SyncState(store.state(f"{name}_nudge_state")).all_originals()
    finally:
        if b.name == "milvus-lite":
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(b.path))
    return {i: np.asarray(got[i].vector, np.float32).tobytes() for i in ids if i in got}


def holds(i: Any, vectors: dict[Any, np.ndarray], coll: Any, writes: list[dict[str, Any]], w: dict[str, Any]) -> str:
    """What the record holds instead of the application's last write."""
    got = vectors.get(i)
    if got is None:
        return "record gone"
    if i in coll.originals and got.tobytes() == coll.originals[i].tobytes():
        return "its original vector"
    for k, x in enumerate(x for x in writes if x["id"] == i and x is not w):
        if np.asarray(x["vector"], np.float32).tobytes() == got.tobytes():
            return f"an earlier application write (t1 {1e3 * (x['t1'] - w['t1']):.0f} ms before the last)"
    return "another vector (nudge-sync's target)"


def batch_times(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per write batch: when its re-read began (``save``), ended (``before_write``), and the write
    was acknowledged (``write``), with the ids it wrote."""
    at = {(e["point"], e["n"]): e for e in events}
    out = []
    for (point, n), e in sorted(at.items(), key=lambda kv: kv[1]["t"]):
        if point == "run.save" and ("run.write", n) in at and ("run.before_write", n) in at:
            out.append({"n": n, "save": e["t"], "before_write": at[("run.before_write", n)]["t"],
                        "write": at[("run.write", n)]["t"], "ids": at[("run.before_write", n)].get("ids", [])})
    return out


def place(i: Any, w: dict[str, Any], batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the lost write ``w`` of record ``i`` fell relative to the batches that wrote ``i``."""
    for bt in batches:
        if i in bt["ids"]:
            phase = ("before the re-read" if w["t1"] < bt["save"] else
                     "during the re-read (save -> before_write)" if w["t0"] < bt["before_write"] else
                     "during the write call (before_write -> write)" if w["t0"] < bt["write"] else
                     "after the write was acknowledged")
            return {"id": i, "batch": bt["n"], "phase": phase, "t0-save_ms": round(1e3 * (w["t0"] - bt["save"]), 1),
                    "t1-write_ms": round(1e3 * (w["t1"] - bt["write"]), 1)}
    return {"id": i, "batch": None, "phase": "in no batch that wrote the record"}


def summary(name: str, trials: list[dict[str, Any]], how: str) -> str:
    rereads = [1e3 * (bt["write"] - bt["save"]) for t in trials for bt in t["batches"]]
    sends = [1e3 * (bt["write"] - bt["before_write"]) for t in trials for bt in t["batches"]]
    lossy = sum(any(x["lost"] for x in t["losses"]) for t in trials)
    n_lost = sum(sum(x["lost"] for x in t["losses"]) for t in trials)
    based = sum(sum(not x["lost"] for x in t["losses"]) for t in trials)
    writes = sum(t["writes"] for t in trials)
    chased = sum(t["chased"] for t in trials)
    codes = ",".join(sorted({str(t["code"]) for t in trials}))

    def mm(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} / {max(xs):.1f}" if xs else "-"

    return (f"| {name} | {how} | {len(trials)} | {lossy} | {n_lost} / {writes} ({chased} chased) | {len(rereads)} | {mm(rereads)} | "
            f"{mm(sends)} | {based} | {codes} |")


HEADER = ("| backend | application | trials | trials with a loss | writes lost / app writes | batches | "
          "window re-read -> ack, ms (median / max) | write call alone, ms (median / max) | "
          "nudged from the app's vector | run exit codes |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8, help="trials per embedded backend")
    p.add_argument("--server-trials", type=int, default=5, help="trials per server backend")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--out", help="append the table and loss details (markdown) to this file")
    p.add_argument("--no-adds", action="store_true", help="the application only re-embeds, never adds records")
    p.add_argument("--chase", action="store_true", help="also re-embed one record of every batch as it is written")
    p.add_argument("workdir", nargs="?")
    a = p.parse_args(argv)
    global ADD_EVERY, CHASE
    CHASE = a.chase
    ADD_EVERY = 10**9 if a.no_adds else ADD_EVERY
    rows, details = [], []
    with workdir_or_temporary(a.workdir, "bench-writer-race-") as work:
        for name in a.backends.split(","):
            n = a.trials if name in ("chroma-persistent", "milvus-lite", "qdrant-local") else a.server_trials
            how = "thread, in-process run" if name in IN_PROCESS else "separate process"
            how += ", re-embeds only" if a.no_adds else ", re-embeds + adds"
            how += ", chasing batches" if a.chase else ""
            started = time.monotonic()
            with open_backend(name, work / name) as b:
                trials, cands = [], None
                for k in range(n):
                    t = trial(b, k, work / name, cands)
                    cands = t["candidates"]
                    trials.append(t)
                    print(f"{name} trial {k}: exit {t['code']}, {t['writes']} app writes, "
                          f"{len(t['batches'])} batches, lost {t['losses']}", file=sys.stderr, flush=True)
            rows.append(summary(name, trials, how))
            details += [f"- {name} trial {t['trial']}: {json.dumps(x)}" for t in trials for x in t["losses"] if x["lost"]]
            details += [f"- {name} trial {t['trial']}: run exited {t['code']}: {t['said']}" for t in trials if t["code"]]
            print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = "\n".join([HEADER, *rows, "", "Lost writes and failed runs:" if details else "No application write was lost; every run exited 0.",
                      *details, "", f"load average at the end: {load}", ""])
    print(text)
    if a.out:
        with open(a.out, "a") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
