"""An application writing the collection while a run or a rollback writes it (defects 2 and 4 of
issue 10), on every real backend.

The application is another client of the same database. Probes (``nudge_sync.engine.faults``) make it
write at exact points of the protocol: before a batch is re-read, between the re-read and the
write (the one-batch window), after the write. nudge-sync must never overwrite or revert a vector
it did not write; a record re-embedded under it is adopted as the record's new original.
"""

from __future__ import annotations

import numpy as np
import pytest

import connectors
import nudge_sync
from nudge_sync import SyncOptions
from nudge_sync.engine import faults
from nudge_sync.engine.state import SyncState
from tests.backends import random_vectors
from tests.engine.test_refusals import make_entries
from tests.engine.conftest import DIM, N

BATCH = 10


@pytest.fixture(autouse=True)
def no_probes_left():
    faults.clear()
    yield
    faults.clear()


def fresh(seed: int) -> np.ndarray:
    """An application's new embedding of a record (unit-norm, like the collection's)."""
    return random_vectors(1, DIM, seed=seed, normalize=True)


def originals(store, name):
    return SyncState(store.state(f"{name}_nudge_state")).all_originals()


def test_re_embeds_during_a_run_and_a_rollback_are_adopted_never_overwritten(harness, coll):
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    theirs: dict = {}
    with connectors.open_store(harness.uri(name)) as store, connectors.open_store(harness.uri(name)) as app:
        plan = nudge_sync.sync(store, SyncOptions(dry_run=True, batch_size=BATCH), entries=entries)
        later, written_first = plan.written_ids[2 * BATCH], plan.written_ids[1]  # in batches 3 and 1
        theirs.update({later: fresh(101), written_first: fresh(102)})
        # batch 1 is about to be written: re-embed a record of batch 3; batch 1 was written: one of its own
        faults.on("run.before_write", lambda hit, b: hit == 1 and app.update_vectors([later], theirs[later]))
        faults.on("run.write", lambda hit, b: hit == 1 and app.update_vectors([written_first], theirs[written_first]))
        report = nudge_sync.sync(store, SyncOptions(batch_size=BATCH), entries=entries)
        faults.clear()
        assert report.status == "written" and report.counts["adopted_during_run"] == 2
        assert set(report.written_ids) == set(plan.written_ids) - set(theirs)
        state = originals(store, name)
        for i, v in theirs.items():  # their vectors are the records' new originals
            assert state[i].vector.tobytes() == v[0].tobytes() and not state[i].nudged
        status = nudge_sync.status(store)
        assert status["adopted"] == 0 and status["nudged"] == len(report.written_ids) and status["pending"] == 0

        # the next run plans from the new originals; then a rollback, with two more re-embeds under it
        nudge_sync.sync(store, SyncOptions(batch_size=BATCH), entries=entries)
        all_nudged = nudge_sync.status(store)["nudged"]
        candidates = [i for i in report.written_ids if i not in theirs]

        def under_the_rollback(hit, batch_ids, *, later: bool):
            if hit == 1:  # a record of a later batch, or one the first batch just restored
                pick = next(i for i in candidates if (i not in batch_ids) == later and i not in theirs)
                theirs[pick] = fresh(201 + len(theirs))
                app.update_vectors([pick], theirs[pick])

        faults.on("rollback.before_write", lambda hit, b: under_the_rollback(hit, b, later=True))
        faults.on("rollback.write", lambda hit, b: under_the_rollback(hit, b, later=False))
        undone = nudge_sync.rollback(store, batch_size=BATCH)
        faults.clear()
        assert undone["restored"] == all_nudged - 2 and undone["adopted_during_rollback"] == 2
        assert undone["skipped_reembedded"] == 0
        status = nudge_sync.status(store)  # the adopted ones hold their (new) originals too
        assert status["nudged"] == 0 and status["pending"] == 0 and status["adopted"] == 0
        again = nudge_sync.rollback(store, batch_size=BATCH)
        assert again["status"] == "unchanged" and again["to_restore"] == 0
    stored = harness.vectors(name)
    for i, v in theirs.items():
        assert stored[i].tobytes() == v[0].tobytes()
    assert all(stored[i].tobytes() == vectors[n].tobytes() for n, i in enumerate(ids) if i not in theirs)


class Died(BaseException):
    """A process dying at a probe (no cleanup of ours runs after it but finally blocks)."""


#: Where a rollback dies (at its third batch), and how many batches it had written / recorded.
DEATHS = {"rollback.before_write": (2, 2), "rollback.save": (2, 2), "rollback.write": (3, 2), "rollback.record": (3, 3)}


def test_a_rollback_that_died_and_ran_again_counts_right(harness, coll):
    name, ids, vectors = coll
    entries = make_entries(ids, vectors)
    # every point on every harness but Milvus 2.3.5, whose Strong reads make each cycle slow: there
    # the two points where the database and the state disagree (marked, but not written; written,
    # but not recorded)
    points = ("rollback.save", "rollback.write") if harness.name == "milvus-2.3.5" else tuple(DEATHS)
    with connectors.open_store(harness.uri(name)) as store:
        for point in points:
            written, recorded = DEATHS[point]
            n = len(nudge_sync.sync(store, SyncOptions(), entries=entries).written_ids)

            def die(hit, batch_ids, point=point):
                if hit == 3:
                    raise Died(point)

            faults.on(point, die)
            with pytest.raises(Died):
                nudge_sync.rollback(store, batch_size=BATCH)
            faults.clear()
            # what the database holds decides, batch by batch
            status = nudge_sync.status(store)
            assert status["nudged"] == n - BATCH * written and status["adopted"] == 0, point
            undone = nudge_sync.rollback(store, batch_size=BATCH, break_lock=True)
            assert undone["skipped_reembedded"] == 0, point
            assert undone["restored"] + undone["already_restored"] == n - BATCH * recorded, point
            assert undone["already_restored"] == BATCH * (written - recorded), point
            assert nudge_sync.status(store)["nudged"] == 0, point
            stored = harness.vectors(name)
            assert all(stored[i].tobytes() == vectors[k].tobytes() for k, i in enumerate(ids)), point


def test_the_window_is_one_batch_and_qdrant_version_field_closes_it(harness_qdrant_local, collection_name):
    """Between a batch's re-read and its write a concurrent write can still be lost (README: the
    window per backend); with version_field= Qdrant writes conditionally and nothing is lost."""
    h = harness_qdrant_local
    ids = h.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    h.create(collection_name, ids, vectors, metric="dot", rich=False)
    for i in ids:
        h.client.set_payload(collection_name, {"updated_at": 0}, points=[i], wait=True)
    entries = make_entries(ids, vectors)
    from qdrant_client import models

    try:
        outcomes = {}
        for option in ("", "&version_field=updated_at"):
            with connectors.open_store(h.uri(collection_name) + option) as store:
                nudge_sync.rollback(store) if option else None
                plan = nudge_sync.sync(store, SyncOptions(dry_run=True, batch_size=BATCH), entries=entries)
                victim = plan.written_ids[BATCH + 3]  # in batch 2
                theirs = fresh(300 + len(option))
                stamp = 100 + len(option)  # a new version each time the application writes

                def in_the_window(hit, batch_ids):  # batch 2 re-read and saved, not yet written
                    if hit == 2:
                        h.client.update_vectors(collection_name, points=[
                            models.PointVectors(id=victim, vector=theirs[0].tolist())], wait=True)
                        h.client.set_payload(collection_name, {"updated_at": stamp}, points=[victim], wait=True)

                faults.on("run.save", in_the_window)
                report = nudge_sync.sync(store, SyncOptions(batch_size=BATCH), entries=entries)
                faults.clear()
                outcomes[option] = (h.vectors(collection_name)[victim].tobytes() == theirs[0].tobytes(),
                                    report.counts["adopted_during_run"])
        assert outcomes[""] == (False, 0)  # lost: overwritten inside the one-batch window
        assert outcomes["&version_field=updated_at"] == (True, 1)  # conditional write: kept and adopted
    finally:
        faults.clear()
        for name in h.collections():
            if name.startswith(collection_name):
                h.drop(name)
