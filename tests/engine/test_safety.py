"""Failures mid-write and the lock of a dead run (defects 3 and 6 of issue 10), on every backend.

A run that fails after writing puts back what it wrote (exit 6, "as it was before this run"); if
it cannot, it says "partially written" (exit 7) and the state lets `rollback --run ID` or a rerun
finish the job. A lock left by a process of this host that no longer runs is taken over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import connectors
import nudge_sync
from connectors import ConnectionFailed
from nudge_sync import DatabaseError, ExitCode, LockHeld, PartiallyWritten, SyncOptions, exit_code_for
from nudge_sync.engine.state import SyncState
from tests.backends import random_vectors
from tests.engine.test_refusals import make_entries
from tests.engine.conftest import DIM, N

BATCH = 10


def failing_writes(monkeypatch, store, *, from_call: int, until_call: int | None = None) -> list[int]:
    """Make the store's vector writes fail (the database gone) from the ``from_call``-th call on,
    up to ``until_call`` (None: for good)."""
    real, calls = store.update_vectors, []

    def update_vectors(ids, vectors, **kwargs):
        calls.append(len(ids))
        if len(calls) >= from_call and (until_call is None or len(calls) <= until_call):
            raise ConnectionFailed("lost the server (connection reset by peer)")
        return real(ids, vectors, **kwargs)

    monkeypatch.setattr(store, "update_vectors", update_vectors)
    return calls


def test_a_run_that_fails_mid_write_puts_back_what_it_wrote(harness, coll, monkeypatch):
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    with connectors.open_store(harness.uri(name)) as store:
        first = nudge_sync.sync(store, SyncOptions(), entries=entries[:100])  # some records already nudged
        before = harness.vectors(name)
        failing_writes(monkeypatch, store, from_call=3, until_call=3)  # batch 3 fails; the undo's writes work
        with pytest.raises(DatabaseError, match="the collection is as it was before this run") as err:
            nudge_sync.sync(store, SyncOptions(batch_size=BATCH), entries=entries)
        assert exit_code_for(err.value) == ExitCode.DATABASE_ERROR
        assert "lost the server" in str(err.value)
        monkeypatch.undo()
        assert err.value.report.status == "undone" and err.value.report.counts["put_back"] == 2 * BATCH
        status = nudge_sync.status(store)
        assert status["nudged"] == len(first.written_ids) and status["pending"] == 0 and status["adopted"] == 0
        assert [r["status"] for r in nudge_sync.history(store)] == ["written", "undone"]
    after = harness.vectors(name)
    assert all(after[i].tobytes() == before[i].tobytes() for i in ids)


def test_a_run_that_cannot_put_back_says_partially_written(harness, coll, monkeypatch):
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    with connectors.open_store(harness.uri(name)) as store:
        failing_writes(monkeypatch, store, from_call=3)  # the database does not come back
        with pytest.raises(PartiallyWritten) as err:
            nudge_sync.sync(store, SyncOptions(batch_size=BATCH), entries=entries)
        monkeypatch.undo()
        report = err.value.report
        assert exit_code_for(err.value) == ExitCode.PARTIALLY_WRITTEN == 7
        assert str(err.value).startswith(f"partially written: {3 * BATCH} of {report.counts['to_write']} vectors "
                                         f"of run {report.run_id} may be written")
        assert f"rerun, or `nudge-sync rollback --run {report.run_id}`, completes it" in str(err.value)
        assert report.status == "partial"
        status = nudge_sync.status(store)  # the state knows exactly what may be written
        assert status["nudged"] == 2 * BATCH and status["pending"] == 3 * BATCH and status["adopted"] == 0
        assert nudge_sync.history(store)[-1]["status"] == "partial"
        undone = nudge_sync.rollback(store, run_id=report.run_id)
        assert undone["restored"] == 2 * BATCH and undone["skipped_reembedded"] == 0
        assert nudge_sync.status(store)["nudged"] == 0
    after = harness.vectors(name)
    assert all(after[i].tobytes() == vectors[k].tobytes() for k, i in enumerate(ids))


#: Takes the lock of a collection's state and exits without releasing it (a run that died).
HOLDER = textwrap.dedent("""
    import os, signal, sys
    import connectors
    from nudge_sync.engine.state import SyncState
    with connectors.open_store(sys.argv[1]) as store:
        state = SyncState(store.state(sys.argv[2]))
        state.ensure(int(sys.argv[3]))
        state.set_lock_run(state.acquire(3600, settle=0), "dead-run")
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_lock_of_a_run_that_died_on_this_host_is_taken_over(harness_chroma_persistent, collection_name, tmp_path):
    h = harness_chroma_persistent
    ids = h.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    h.create(collection_name, ids, vectors, metric="dot", rich=False)
    uri, state_name = h.uri(collection_name), f"{collection_name}_nudge_state"
    try:
        dead = subprocess.run([sys.executable, "-c", HOLDER, uri, state_name, str(DIM)], capture_output=True, text=True)
        assert dead.returncode == -9, dead.stderr
        with connectors.open_store(uri) as store:
            state = SyncState(store.state(state_name))
            held = state.lock()
            assert held["run_id"] == "dead-run" and held["expires"] > held["acquired"] + 3000
            report = nudge_sync.sync(store, SyncOptions(), entries=make_entries(ids, vectors))
            assert report.status == "written" and report.took_over_lock["run_id"] == "dead-run"
            assert state.lock() is None
            # a lock of another host is honoured until it expires (or --break-lock)
            state.collection.put("lock", [connectors.StateRecord("lock", None, {**held, "host": "elsewhere"})])
            with pytest.raises(LockHeld, match="locked by"):
                nudge_sync.sync(store, SyncOptions(), entries=make_entries(ids, vectors))
            # and so is the lock of a live process here (this one)
            state.break_lock()
            token = state.acquire(600, settle=0)
            with pytest.raises(LockHeld):
                nudge_sync.rollback(store)
            state.release(token)
            assert json.dumps(report.to_dict())  # the report stays JSON
    finally:
        for name in h.collections():
            if name.startswith(collection_name):
                h.drop(name)


def test_a_collection_too_wide_for_pending_targets_is_refused_up_front():
    from nudge_sync.engine.checks import check_state_room
    from nudge_sync.engine.errors import RefusedInput

    class Room:
        name, max_meta_bytes = "docs_nudge_state", 65_535

    class Info:
        collection, dimension = "docs", 16_384

    with pytest.raises(RefusedInput, match=r"up to 12,\d{3} dimensions"):
        check_state_room(SyncState(Room()), Info())  # type: ignore[arg-type]
    Info.dimension = 4096  # what embedding models produce fits
    check_state_room(SyncState(Room()), Info())  # type: ignore[arg-type]
