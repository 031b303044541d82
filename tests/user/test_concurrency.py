"""Concurrency as users meet it (issue #10, defect 2): two runs at once, and an application writing
to the collection (its own process, the database's own client) during a run and a rollback.

* Two runs: one paused right after it took the lock, the other exits 5 (or, on an embedded engine
  that admits one process per path, a clear "in use" error) and changes nothing; the first completes.
  On the servers this is the first step of the interleavings below (one collection, one run).
* Deterministic interleavings (server backends): a run (then a rollback) pauses after writing its
  first batch; the application re-embeds records of that batch (a write landing after ours), records
  of later batches (landing before their batch is re-read), untouched records, and adds records.
  Every application write must survive, every time; the run exits 0 and adopts the re-embedded
  records as new originals, so a rollback leaves them alone too.
* A free-running writer (every 25 ms) during a further run and rollback of the same collection: any
  application write that was lost must lie inside one batch's window -- after the trace event
  preceding that batch's ``before_write`` (the batch's re-read) and before its ``write`` event --
  the remaining window the README documents for Chroma and Milvus.

What an uninterrupted run writes comes from ``plan --out`` on the same collection (its targets), and
the runs read the log with ``--log-file``: the log's source is not the property here.
Collections use the dot metric with unit vectors: every database stores them bit for bit, so
"survived" means identical bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.backends import RecordId
from tests.backends.chroma import chroma_name
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, DIM, Collection, make_collection
from tests.user._native import EMBEDDED, SERVERS, UserBackend, checksum
from tests.user._probes import Pause, read_trace
from tests.user._runner import nudge, spawn
from tests.user.test_plan_apply import targets_of

#: embedded engines that admit one process per path: a second run cannot even open the database
EXCLUSIVE_PATH = ("qdrant-local", "milvus-lite")
METRIC = "dot"


def collection(b: UserBackend, name: str, directory: Path) -> tuple[Collection, dict[str, tuple[str, ...]]]:
    """The collection and each command's arguments (``plan`` and ``run`` read the log as a file)."""
    coll = make_collection(b, name, directory, metric=METRIC, import_log=False)
    store = ("--store", coll.uri, *BATCH_ARGS)
    runs = (*store, "--log-file", str(directory / "feedback.jsonl"))
    return coll, {"plan": runs, "run": runs, "rollback": store}


def second_run_is_refused(b: UserBackend, args: tuple[str, ...]) -> None:
    """A run started while another holds the lock (or, embedded, the path) is refused."""
    second = nudge("run", *args, expect=None)
    if b.name in EXCLUSIVE_PATH:
        assert second.code == 6 and "another process" in second.stderr, second.describe()
    else:
        assert second.code == 5 and "locked by" in second.stderr, second.describe()
        assert second.report["error_type"] == "LockHeld", second.report


embedded_backends = pytest.mark.parametrize("user_backend", [n for n in EMBEDDED if n in selected_harnesses()],
                                            indirect=True)


@embedded_backends
def test_two_runs_at_once(user_backend, collection_name, tmp_path, tally):
    """Embedded engines; the servers' case opens test_application_writes_around_a_batch_survive."""
    b = user_backend
    with tally.counting(b.name, "concurrent-runs", fault="second run while the first holds the lock"):
        coll, args = collection(b, collection_name, tmp_path)
        pause = Pause.at(tmp_path, "lock.acquired")
        first = spawn("run", *args["run"], env=pause.env())
        pause.wait_reached(first)
        second_run_is_refused(b, args["run"])
        pause.go()
        done = first.wait(expect=0).report
        assert done["status"] == "written", done
        vectors, snap = b.read(coll.name)
        assert checksum(snap) == coll.payloads
        changed = sum(vectors[i].tobytes() != coll.originals[i].tobytes() for i in coll.ids)
        assert changed == done["counts"]["written"], "the refused run wrote, or the first run did not"
        status = nudge("status", "--store", coll.uri).report
        assert (status["nudged"], status["pending"], status["lock"], status["runs"]) == (changed, 0, None, 1), status


# -- the application ------------------------------------------------------------------------------------


class AppWriter:
    """The application process in ``serve`` mode: each call returns once its writes are done."""

    def __init__(self, backend: UserBackend, coll: Collection, **extra: Any):
        self.name = chroma_name(coll.name) if backend.backend == "chroma" else coll.name
        cfg = {**backend.app_config(), "collection": self.name, "dim": DIM, "seed": len(coll.name), "mode": "serve",
               "id_type": "str" if isinstance(coll.ids[0], str) else "int", **extra}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.user._writer", json.dumps(cfg)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the application process died: {self.proc.stderr.read()[-3000:]}")
        return line

    def _send(self, cmd: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def write(self, reembed: list[RecordId] = (), add: int = 0) -> list[dict[str, Any]]:
        self._send({"reembed": list(reembed), "add": add})
        return json.loads(self._line())["writes"]

    def free(self, **settings: Any) -> None:
        """Start free-running writes (tests/user/_writer.py ``free``) until ``settings["stop"]`` exists."""
        self._send({"free": settings})

    def freed(self) -> None:
        """Wait for the free-running writes to end (after their stop file was created)."""
        assert json.loads(self._line()) == {"writes": []}

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def last_writes(writes: list[dict[str, Any]]) -> dict[RecordId, np.ndarray]:
    """The application's last vector per record."""
    return {w["id"]: np.asarray(w["vector"], np.float32) for w in sorted(writes, key=lambda w: w["t1"])}


def lost(writes: list[dict[str, Any]], vectors: dict[RecordId, np.ndarray]) -> list[RecordId]:
    return [i for i, v in last_writes(writes).items() if i not in vectors or vectors[i].tobytes() != v.tobytes()]


def batch_ids(trace: Path, pid: int, point: str, n: int) -> list[RecordId]:
    return next(e["ids"] for e in read_trace(trace) if e["pid"] == pid and e["point"] == point and e["n"] == n)


@dataclass
class Planned:
    """What an uninterrupted run writes (``plan --out`` on the collection, which writes nothing)."""

    written: set[RecordId]
    final: dict[RecordId, np.ndarray]


def planned(coll: Collection, args: dict[str, tuple[str, ...]], directory: Path) -> Planned:
    out = directory / "plan.json"
    report = nudge("plan", *args["plan"], "--out", out).report
    targets = targets_of(out)
    assert len(targets) == report["counts"]["to_write"] > 0, report
    return Planned(set(targets), {**coll.originals, **targets})


server_backends = pytest.mark.parametrize("user_backend", [n for n in SERVERS if n in selected_harnesses()],
                                          indirect=True)


@server_backends
def test_application_writes_around_a_batch_survive(user_backend, collection_name, tmp_path, tally):
    """Deterministic interleavings: application writes land after a batch was written (before it
    was read back) and before later batches are re-read, during a run and during a rollback; the
    run, before its first batch, holds the lock against a second run. Then a free-running writer
    beside a further run and rollback of the same collection."""
    b = user_backend
    coll, args = collection(b, collection_name, tmp_path)
    ref = planned(coll, args, tmp_path)
    app = AppWriter(b, coll)
    trace = tmp_path / "interleaved.trace"
    writes: list[dict[str, Any]] = []
    try:
        for command in ("run", "rollback"):
            with tally.counting(b.name, "app-writer", fault=f"{command}: writes around batch 1"):
                pause = Pause.at(tmp_path, f"{command}.write", 1)
                locked = Pause.at(tmp_path, "lock.acquired")
                pauses = pause.env(locked) if command == "run" else pause.env()
                proc = spawn(command, *args[command], env={**pauses, "NUDGE_SYNC_TRACE": str(trace)})
                if command == "run":
                    with tally.counting(b.name, "concurrent-runs", fault="second run while the first holds the lock"):
                        locked.wait_reached(proc)
                        second_run_is_refused(b, args["run"])
                        locked.go()
                pause.wait_reached(proc)
                first = batch_ids(trace, proc.pid, f"{command}.write", 1)
                touched = {w["id"] for w in writes}  # by the application already: adopted, not ours
                later = sorted(ref.written - set(first) - touched, key=repr)[:3]
                untouched = sorted(set(coll.ids) - ref.written - touched, key=repr)[:3]
                writes += app.write(reembed=[*first[:3], *later, *untouched], add=3)
                pause.go()
                result = proc.wait(expect=0)
                vectors, snap = b.read(coll.name)
                gone = lost(writes, vectors)
                assert not gone, f"{len(gone)} application writes were lost: {gone}\n{result.describe()}"
                original_ids = set(coll.ids)
                assert checksum({i: s for i, s in snap.items() if i in original_ids}) == coll.payloads
                assert_state_after(b, coll, ref, command, writes, vectors)
        free_running_writer(b, coll, args, ref, app, tmp_path, tally)
    finally:
        app.close()


def assert_state_after(b: UserBackend, coll: Collection, ref: Planned, command: str, writes: list[dict[str, Any]],
                       vectors: dict[RecordId, np.ndarray]) -> None:
    """Records the application never touched hold nudge-sync's result; status agrees (one run
    recorded: the refused second run left no record)."""
    touched = {w["id"] for w in writes}
    for i in coll.ids:
        if i in touched:
            continue
        want = ref.final[i] if command == "run" else coll.originals[i]
        assert vectors[i].tobytes() == want.tobytes(), f"record {i!r} holds neither the app's nor our vector"
    status = nudge("status", "--store", coll.uri).report
    nudged = len(ref.written - touched) if command == "run" else 0
    assert (status["nudged"], status["pending"], status["lock"]) == (nudged, 0, None), (status, nudged)
    assert command != "run" or status["runs"] == 1, status


def free_running_writer(b: UserBackend, coll: Collection, args: dict[str, tuple[str, ...]], ref: Planned, app: AppWriter,
                        tmp_path: Path, tally) -> None:
    """The application re-embeds a record every 25 ms (every fifth write: adds one) while a run and
    a rollback go by; every write lost must lie inside a batch's window."""
    log, stop, trace = tmp_path / "app.jsonl", tmp_path / "stop", tmp_path / "free.trace"
    # half the application's re-embeds hit records the run nudges, half the rest
    candidates = sorted(ref.written, key=repr) + sorted(set(coll.ids) - ref.written, key=repr)[:len(ref.written)]
    app.free(candidates=candidates, log=str(log), stop=str(stop), interval=0.025, add_every=5, seed=7)
    try:
        wait_for_lines(log, app.proc, 3)
        results = [nudge(command, *args[command], env={"NUDGE_SYNC_TRACE": str(trace)}, expect=None)
                   for command in ("run", "rollback")]
    finally:
        stop.touch()
    app.freed()
    for result in results:  # the run and the rollback must adopt what the application wrote, not fail
        tally.check(b.name, "free-writer", [] if result.code == 0 else [result.describe()[-1500:]],
                    fault=f"{result.argv[3]} beside a free-running writer")
    run, rollback = results
    writes = [json.loads(line) for line in log.read_text().splitlines()]
    vectors, _ = b.read(coll.name)
    windows = batch_windows(read_trace(trace), {run.pid, rollback.pid})
    last = {w["id"]: w for w in sorted(writes, key=lambda w: w["t1"])}
    for i in lost(writes, vectors):
        w = last[i]
        inside = any(i in ids and w["t1"] > start and w["t0"] < end for start, end, ids in windows)
        tally.trial(b.name, "free-writer", inside, fault="application write lost",
                    detail=f"record {i!r} written at [{w['t0']:.3f}, {w['t1']:.3f}] outside every batch window")
    kept = len(last) - len(lost(writes, vectors))
    for _ in range(kept):
        tally.trial(b.name, "free-writer", True, fault="application write")
    assert not tally.failures, tally.failures
    assert run.report["status"] in ("written", "unchanged") and rollback.code == 0
    assert len(writes) >= 10, f"the writer wrote only {len(writes)} times: nothing was tested"


def wait_for_lines(path: Path, proc: subprocess.Popen, n: int, timeout: float = 60.0) -> None:
    """Until the free-running writer has logged ``n`` writes (it is running, connected, writing)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= n):
        if proc.poll() is not None:
            raise AssertionError(f"the application process died: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the application process never wrote"
        time.sleep(0.02)


def batch_windows(trace: list[dict[str, Any]], pids: set[int]) -> list[tuple[float, float, set[RecordId]]]:
    """(start, end, ids) per write batch of a run or rollback: from the event preceding the batch's
    ``before_write`` (the batch is re-read after it) to its ``write`` event."""
    out = []
    for pid in pids:
        events = [e for e in trace if e["pid"] == pid]
        for k, e in enumerate(events):
            if e["point"].endswith(".before_write"):
                end = next(x for x in events[k:] if x["point"] == e["point"].replace("before_write", "write")
                           and x["n"] == e["n"])
                start = events[k - 1]["t"] if k else 0.0
                out.append((start, end["t"], set(e["ids"])))
    return out
