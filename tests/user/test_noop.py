"""A night with nothing new, as users meet it: ``nudge-sync run`` processes against a Milvus Lite
file, traced with ``NUDGE_SYNC_TRACE`` (every read of the collection's vectors passes a
``run.read`` probe, and the first one follows the log read).

* A run with nothing new since the last written run exits 3 ("nothing new") with no probe hit at
  all (no vector read, no lock taken) and no plan step; it records no run and leaves every vector
  as it was. A watcher's idle cycles do the same: two cycles, no probe hit, no run record. (The
  state collection is read back with Milvus Lite's own client: not a record added or changed.)
* New feedback after a no-op triggers a real run again.

Proved elsewhere, through processes too: ``--force`` runs in full anyway and records an
``unchanged`` run (tests/user/test_sequences.py, five backends: its second run on the same data);
a run after a rollback is real again, with nothing new in the log (tests/user/test_runs_over_time.py,
the run between the two killed rollbacks, embedded engines).
"""

from __future__ import annotations

from pathlib import Path

from tests.user._data import BATCH_ARGS, make_collection
from tests.user._digest import digest
from tests.user._native import embedded_backend
from tests.user._probes import hits, read_trace, traced
from tests.user._runner import CliResult, nudge, spawn
from tests.user._watching import Lines, new_feedback


def traced_run(uri: str, trace: Path, *extra: str, expect: int = 0) -> tuple[CliResult, dict[str, int]]:
    """One ``nudge-sync run`` and the probe hits of its own process."""
    result = nudge("run", "--store", uri, *BATCH_ARGS, *extra, env=traced({}, trace), expect=expect)
    return result, hits(read_trace(trace), result.pid) if trace.exists() else {}


def test_a_noop_run_reads_no_vectors_and_new_feedback_runs_again(tmp_path):
    backend = embedded_backend("milvus-lite", tmp_path / "db")
    coll = make_collection(backend, "quiet", tmp_path)
    trace = tmp_path / "runs.trace"

    state = coll.name + "_nudge_state"
    first, seen = traced_run(coll.uri, trace)
    assert first.report["status"] == "written" and seen.get("run.read", 0) > 1, first.describe()
    with backend.native() as h:
        after_first, recorded = h.vectors(coll.name), digest(h, state)

    idle, seen = traced_run(coll.uri, trace, expect=3)
    assert idle.report["status"] == "gated" and "nothing new" in idle.report["reason"], idle.describe()
    assert seen == {}, f"a no-op run hit {seen}: it read the collection or took the lock"
    assert set(idle.report["timings"]) == {"read_inputs"}  # never planned, fitted or wrote
    with backend.native() as h:
        now, after_idle = h.vectors(coll.name), digest(h, state)
    assert after_idle == recorded, "an idle night wrote to the state (a run record?)"
    assert all(now[i].tobytes() == after_first[i].tobytes() for i in coll.ids)

    # a watcher's idle cycles: the same check, no vector read, no run record
    watch_trace = tmp_path / "watch.trace"
    watcher = Lines(spawn("watch", "--store", coll.uri, *BATCH_ARGS, "--every", "1s", "--max-runs", "2",
                          env=traced({"NUDGE_SYNC_LOG_FORMAT": "json"}, watch_trace)))
    assert watcher.finish(timeout=120) == 0, "\n".join(watcher.lines[-10:])
    cycles = [r for r in watcher.records() if r.get("event") == "summary"]
    assert [(c["status"], c["exit_code"]) for c in cycles] == [("gated", 3)] * 2, cycles
    assert not watch_trace.exists() or hits(read_trace(watch_trace)) == {}
    with backend.native() as h:
        assert digest(h, state) == recorded, "the watcher's idle cycles wrote to the state (a run record?)"

    nudge("feedback", "import", "--store", coll.uri, new_feedback(coll, tmp_path, 20, "fresh"))
    fresh, seen = traced_run(coll.uri, trace)
    assert fresh.report["status"] in ("written", "unchanged") and seen.get("run.read", 0) > 1, fresh.describe()
    assert fresh.report["counts"]["new_since_watermark"] == 20
