"""Failures mid-write and locks, where the user-level suite cannot stage them.

tests/user proves with separate processes and real faults: a server killed or stopped mid-write
(test_server_faults.py: back within the retry budget -> the run completes; down for good -> exit 7
"partially written" naming `rollback --run ID`, the state accounting for every written record, and
both `rollback --run ID` and a rerun completing it); a run or rollback SIGKILLed at 50 points per
backend, its lock taken over by the next process (test_sigkill.py); a live run's lock refusing a
second run (test_concurrency.py). What stays here needs the database to fail exactly one call, or
a lock from another machine.
"""

from __future__ import annotations

import time

import pytest

import connectors
import nudge_sync
from connectors import ConnectionFailed
from nudge_sync import DatabaseError, ExitCode, LockHeld, SyncOptions, exit_code_for
from nudge_sync.engine.state import SyncState
from tests.engine.test_refusals import make_entries
from tests.engine.conftest import DIM

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


@pytest.mark.parametrize("harness", ["qdrant-local", "milvus-lite", "chroma-persistent"], indirect=True)
def test_a_run_that_fails_mid_write_puts_back_what_it_wrote(harness, coll, monkeypatch):
    """Exit 6 "as it was before this run": a batch fails past the retry budget and the put-back
    that follows succeeds. A real server cannot be made to fail exactly one write and then serve
    the next from outside (tests/user's server faults end in completion or in exit 7), so the
    store's write fails here in-process. The put-back is the engine's, the same on every backend:
    one harness per connector."""
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


@pytest.mark.parametrize("harness", ["memory"], indirect=True)
def test_a_lock_of_another_host_is_honoured_until_it_expires_or_is_broken(harness, coll):
    """What the user-level suite cannot stage: a lock taken on another machine (every process it
    starts runs on this host, where a dead holder's lock is taken over at once -- test_sigkill.py --
    and a live one's is refused -- test_concurrency.py). Engine logic over the state collection,
    so one harness: the in-memory store."""
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    with connectors.open_store(harness.uri(name)) as store:
        state = SyncState(store.state(f"{name}_nudge_state"))
        state.ensure(DIM)
        state.set_lock_run(state.acquire(3600, settle=0), "elsewhere-run")
        held = state.lock()
        state.collection.put("lock", [connectors.StateRecord("lock", None, {**held, "host": "elsewhere"})])
        with pytest.raises(LockHeld, match="locked by"):
            nudge_sync.sync(store, SyncOptions(), entries=entries)
        with pytest.raises(LockHeld, match="locked by"):
            nudge_sync.rollback(store)
        assert nudge_sync.status(store)["nudged"] == 0
        # ... until it expires
        state.collection.put("lock", [connectors.StateRecord("lock", None, {
            **held, "host": "elsewhere", "expires": time.time() - 1})])
        report = nudge_sync.sync(store, SyncOptions(), entries=entries)
        assert report.status == "written" and state.lock() is None
        # ... or is broken on purpose
        state.collection.put("lock", [connectors.StateRecord("lock", None, {**held, "host": "elsewhere"})])
        undone = nudge_sync.rollback(store, break_lock=True)
        assert undone["status"] == "rolled-back" and undone["broke_lock_of"] == "elsewhere-run", undone
        assert state.lock() is None


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
