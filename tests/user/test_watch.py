"""``nudge-sync watch`` as users run it: a long-running process of its own, against the suite's own
Chroma server and a Milvus Lite file, fed with ``feedback import`` from other processes and stopped
with SIGTERM.

* Feedback crossing ``--min-new-feedback`` triggers exactly one run (counted in the database's own
  run history and in the watcher's JSON log), and none before it crosses.
* The Chroma server killed and restarted between cycles: the feedback checks fail and are logged,
  and once it is back the next crossing is served without an operator.
* Two watchers on one collection never run together: the second waits for the lock (retried with
  backoff) and runs after the first, on what is left (nothing new: held back by the gate).
* On one Milvus Lite collection, two watchers in turn. SIGTERM inside the first one's run (paused at
  its second batch) stops it at the next batch boundary: what it wrote is put back (every vector
  bit-for-bit its original, payloads unchanged), the run ends ``undone`` and the watcher exits 8.
  The second serves the log that run left unserved and closes the file between cycles (Milvus Lite
  admits one process per file): ``history`` and ``status`` run beside it; its metrics endpoint
  carries the run's real numbers; SIGTERM between runs exits 0 at once.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._procs import free_port
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, Collection, differing, make_collection
from tests.user._native import checksum, embedded_backend
from tests.user._probes import Pause
from tests.user._runner import nudge, spawn
from tests.user._servers import own_server
from tests.user._watching import Lines, new_feedback

JSON_LOGS = {"NUDGE_SYNC_LOG_FORMAT": "json"}
#: lines of the watcher's JSON log
RUN_DONE = r'"event": "summary"'
WATCHING = r'"message": "watching '
CYCLE_DONE = r'"message": "cycle done, store closed'
#: a few polls: long enough for a watcher that would run (wrongly) to have started
SETTLE = 3.0


def summaries(lines: Lines) -> list[dict]:
    return [r for r in lines.records() if r.get("event") == "summary"]


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    if "chroma-http" not in selected_harnesses():
        pytest.skip("chroma-http is not selected (NUDGE_SYNC_BACKENDS)")
    server = own_server("chroma-http", tmp_path_factory.mktemp("watch-chroma"))
    yield server
    server.close()


@pytest.mark.slow
def test_feedback_crossing_the_threshold_triggers_exactly_one_run_and_survives_a_server_restart(chroma, tmp_path):
    coll = make_collection(chroma, "watched", tmp_path).with_options(timeout=2, retry_budget=2)
    # the log so far is served: the watermark is set, and the history holds this one run
    assert nudge("run", "--store", coll.uri, *BATCH_ARGS).report["status"] == "written"
    runs_before = 1
    watcher = spawn("watch", "--store", coll.uri, *BATCH_ARGS, "--min-new-feedback", "30", "--poll", "0.5",
                    "--retry-budget", "5", env=JSON_LOGS)
    lines = Lines(watcher)
    try:
        lines.wait_for(WATCHING)
        nudge("feedback", "import", "--store", coll.uri, new_feedback(coll, tmp_path, 20, "below"))
        time.sleep(SETTLE)
        assert not summaries(lines), "a run started below the threshold"
        nudge("feedback", "import", "--store", coll.uri, new_feedback(coll, tmp_path, 15, "across"))
        lines.wait_for(RUN_DONE)
        time.sleep(SETTLE)
        assert len(summaries(lines)) == 1, "the same feedback was served twice"

        chroma.kill()  # down between cycles: the checks fail, one logged reason each, the watcher goes on
        lines.wait_for(r"feedback check skipped", timeout=60)
        assert watcher.alive()
        chroma.restart()
        nudge("feedback", "import", "--store", coll.uri, new_feedback(coll, tmp_path, 30, "after-restart"))
        lines.wait_for(RUN_DONE, count=2)
    finally:
        if watcher.alive():
            watcher.proc.send_signal(signal.SIGTERM)
        code = lines.finish()
    assert code == 0
    done = summaries(lines)
    assert [s["exit_code"] for s in done] == [0, 0] and all(s["status"] in ("written", "unchanged") for s in done)
    history = nudge("history", "--store", coll.uri).report
    assert len(history) == runs_before + 2
    assert [r["run_id"] for r in history[-2:]] == [s["run_id"] for s in done]
    assert nudge("status", "--store", coll.uri).report["lock"] is None


def test_milvus_lite_watcher_stops_a_run_at_a_batch_then_lets_go_of_the_file_and_serves_metrics(tmp_path):
    """One Milvus Lite collection, two watchers in turn: SIGTERM inside the first one's run, then a
    second watcher serves the log (the stopped run settled nothing) beside ``history`` and ``status``."""
    coll = make_collection(embedded_backend("milvus-lite", tmp_path / "db"), "watched", tmp_path)
    sigterm_inside_a_run_puts_back_what_it_wrote(coll, tmp_path)
    port = free_port()
    # the log's 200 entries are all new: the first poll triggers a run; then polls every 30 s
    watcher = spawn("watch", "--store", coll.uri, *BATCH_ARGS, "--min-new-feedback", "1", "--poll", "30",
                    "--metrics-port", port, env=JSON_LOGS)
    lines = Lines(watcher)
    try:
        lines.wait_for(CYCLE_DONE, timeout=300)
        # between cycles the watcher holds the Milvus Lite file closed: other processes open it
        *before, run = nudge("history", "--store", coll.uri).report
        assert not [r for r in before if r["status"] == "written"], "the stopped run was recorded as written"
        assert nudge("status", "--store", coll.uri).report["lock"] is None
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        samples = {(s.name, s.labels.get("outcome") or s.labels.get("status") or ""): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert samples[("nudge_sync_gamma", "")] == pytest.approx(run["gamma"])
        assert samples[("nudge_sync_records_total", "written")] == run["written"] > 0
        assert samples[("nudge_sync_runs_total", "written")] == 1
        assert samples[("nudge_sync_lock_held", "")] == 0
        started = time.monotonic()
        watcher.proc.send_signal(signal.SIGTERM)
        code = lines.finish(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if watcher.alive():
            watcher.kill()
    assert code == 0, "\n".join(lines.lines[-10:])
    assert stopped_in < 25, f"SIGTERM between runs took {stopped_in:.1f}s"  # the 30 s poll was not waited out
    assert summaries(lines)[0]["run_id"] == run["run_id"]


def sigterm_inside_a_run_puts_back_what_it_wrote(coll: Collection, tmp_path: Path) -> None:
    pause = Pause.at(tmp_path, "run.write", 2)  # two batches written, the run waits before the third
    watcher = spawn("watch", "--store", coll.uri, *BATCH_ARGS, "--min-new-feedback", "1", "--poll", "30",
                    env={**JSON_LOGS, **pause.env()})
    lines = Lines(watcher)
    try:
        pause.wait_reached(watcher)
        watcher.proc.send_signal(signal.SIGTERM)
        lines.wait_for(WATCHING)  # (already there) the signal is handled while the run waits
        pause.go()
        code = lines.finish(timeout=180)
    finally:
        if watcher.alive():
            watcher.kill()
    assert code == 8, "\n".join(lines.lines[-10:])
    failed = [r for r in lines.records() if r.get("event") == "summary"]
    assert len(failed) == 1 and (failed[0]["status"], failed[0]["exit_code"]) == ("undone", 8)
    # cold try: the log said "exit 6" and announced the next run of a watcher that was exiting
    messages = [r["message"] for r in lines.records()]
    assert not [m for m in messages if "next run due" in m] and "exit 8" in messages[-1], messages[-3:]
    vectors, snap = coll.backend.read(coll.name)
    assert checksum(snap) == coll.payloads, "payloads changed"
    assert not differing(vectors, coll.originals), "a vector the stopped run wrote was left behind"
    assert nudge("status", "--store", coll.uri).report["lock"] is None


def test_two_watchers_on_one_collection_never_run_together(chroma, tmp_path):
    from datetime import datetime

    coll = make_collection(chroma, "twice", tmp_path)
    args = ("watch", "--store", coll.uri, *BATCH_ARGS, "--min-new-feedback", "1", "--poll", "30",
            "--retry-budget", "120", "--max-runs", "1")
    watchers = [Lines(spawn(*args, env=JSON_LOGS)) for _ in range(2)]
    codes = [w.finish(timeout=300) for w in watchers]
    assert codes == [0, 0]
    # waiting for the other watcher's lock is normal operation: never an error record
    assert not [r for w in watchers for r in w.records() if r["level"] == "error"]
    spans, outcomes = [], []
    for w in watchers:
        records = w.records()
        end = [r for r in records if r.get("event") == "summary"][-1]
        outcomes.append((end["status"], end["exit_code"]))
        # the lock is taken between read_inputs and plan: a run holds it from its plan step to its end
        locked = [r for r in records if r.get("event") == "StepStarted" and r["step"] == "plan"
                  and r["run_id"] == end["run_id"]]
        if locked:
            spans.append((datetime.fromisoformat(locked[0]["time"]), datetime.fromisoformat(end["time"])))
    if len(spans) < 2:  # the second was held back before locking (nothing new): nothing to overlap
        spans.append((max(e for _, e in spans), max(e for _, e in spans)))
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0, f"the runs overlapped: {spans}"
    assert sorted(outcomes)[-1] == ("written", 0), outcomes  # one of them did the work ...
    assert len(nudge("history", "--store", coll.uri).report) >= 1
    assert nudge("status", "--store", coll.uri).report["lock"] is None
