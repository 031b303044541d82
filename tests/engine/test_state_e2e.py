"""The state collection on every real backend: adoption of records re-embedded by someone else,
crash safety of the write order, rollback of one run, and the lock."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
import nudge_sync
from nudge_sync import LockHeld, SyncOptions
from nudge_sync.engine.state import SyncState
from tests.backends import random_vectors
from tests.engine.conftest import DIM
from tests.engine.test_refusals import make_entries


def test_a_record_re_embedded_by_someone_else_is_adopted(harness, coll):
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    with connectors.open_store(harness.uri(name)) as store:
        first = nudge_sync.sync(store, SyncOptions(), entries=entries)
        victim = first.written_ids[0]
        # the application re-embedded this document (a new model version: close, not equal)
        row = ids.index(victim)
        fresh = vectors[row : row + 1] + 0.2 * random_vectors(1, DIM, seed=99, normalize=True)
        fresh /= np.linalg.norm(fresh)
        store.update_vectors([victim], fresh)
        second = nudge_sync.sync(store, SyncOptions(), entries=entries)
        assert second.counts["adopted_reembedded"] == 1
        originals = SyncState(store.state(f"{name}_nudge_state")).all_originals()
        assert originals[victim].vector.tobytes() == fresh[0].tobytes()
        # the record is nudged again, from its new embedding, and rollback returns the new one
        assert victim in second.written_ids
        nudge_sync.rollback(store)
    after = harness.vectors(name)
    assert after[victim].tobytes() == fresh[0].tobytes()
    assert all(after[i].tobytes() == vectors[n].tobytes() for n, i in enumerate(ids) if i != victim)


def test_a_run_that_dies_mid_write_loses_nothing(harness, coll, monkeypatch):
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    with connectors.open_store(harness.uri(name)) as store:
        real = store.update_vectors
        calls = []

        def dies_on_second_batch(batch_ids, batch_vectors, **kwargs):
            calls.append(len(batch_ids))
            if len(calls) == 2:
                raise KeyboardInterrupt("power cut")
            return real(batch_ids, batch_vectors, **kwargs)

        monkeypatch.setattr(store, "update_vectors", dies_on_second_batch)
        with pytest.raises(KeyboardInterrupt):
            nudge_sync.sync(store, SyncOptions(batch_size=10), entries=entries)
        monkeypatch.setattr(store, "update_vectors", real)
        assert nudge_sync.status(store)["pending"] > 0
        # the dead run's lock is released by its finally; the next run finishes the job
        report = nudge_sync.sync(store, SyncOptions(), entries=entries)
        assert report.status == "written"
        assert nudge_sync.status(store)["pending"] == 0
        nudge_sync.rollback(store)
    after = harness.vectors(name)
    assert all(after[i].tobytes() == vectors[n].tobytes() for n, i in enumerate(ids))


def test_rollback_of_one_run_only(harness, coll):
    """Rolling back the second run restores what it wrote and nothing else: records only the first
    run wrote keep their nudged vectors. The first run's feedback answers records of rows 0-29, the
    second adds feedback on rows 30-59; with a fixed gamma a NUDGE-N record moves by its own training
    queries only, so the second run leaves the first run's records as they are."""
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    first_rows = {ids[r] for r in range(30)}
    first_entries = [e for e in entries if e.relevant_ids[0] in first_rows]
    assert 0 < len(first_entries) < len(entries)
    options = SyncOptions(gamma=0.1, min_gain=-1.0)  # the property is the rollback's scope, not quality
    with connectors.open_store(harness.uri(name)) as store:
        first = nudge_sync.sync(store, options, entries=first_entries)
        after_first = harness.vectors(name)
        second = nudge_sync.sync(store, options, entries=entries)
        only_first = set(first.written_ids) - set(second.written_ids)
        only_second = set(second.written_ids) - set(first.written_ids)
        assert only_first and only_second
        undone = nudge_sync.rollback(store, run_id=second.run_id)
        assert undone["restored"] == len(second.written_ids)
        with pytest.raises(nudge_sync.RefusedInput, match="not in the history"):
            nudge_sync.rollback(store, run_id="no-such-run")
    after = harness.vectors(name)
    original = {i: vectors[n] for n, i in enumerate(ids)}
    for i in only_first:  # written by the first run only: still the first run's vector
        assert after[i].tobytes() == after_first[i].tobytes(), i
        assert after[i].tobytes() != original[i].tobytes(), i
    for i in second.written_ids:  # written by the second run: its original again
        assert after[i].tobytes() == original[i].tobytes(), i


def test_lock_is_exclusive_and_expires(harness, coll):
    name, ids, vectors = coll
    with connectors.open_store(harness.uri(name)) as store:
        state = SyncState(store.state(f"{name}_nudge_state"))
        state.ensure(DIM)
        token = state.acquire(ttl=600, settle=0)
        with pytest.raises(LockHeld, match="locked by"):
            nudge_sync.sync(store, SyncOptions(), entries=make_entries(ids, vectors))
        state.release(token)
        state.acquire(ttl=0.01, settle=0)  # a dead run's lock ...
        import time

        time.sleep(0.05)  # ... expires
        assert nudge_sync.sync(store, SyncOptions(), entries=make_entries(ids, vectors)).status == "written"
        assert state.lock() is None
