"""An application writing the collection while a run or a rollback writes it (defect 2 of issue 10),
where the user-level suite cannot put the application in a process of its own: Qdrant local mode
(one process per directory).

tests/user/test_concurrency.py proves the same interleavings with a separate application process
on the Chroma and Milvus servers (whose connector code Chroma persistent and Milvus Lite share), and
tests/user/test_conditional_write.py the one-batch window and Qdrant's ``version_field=``. Here the
application is a second client in this process, writing at the probes: before a batch is re-read
and right after a batch was written. nudge-sync must never overwrite or revert a vector it did not
write; a record re-embedded under it is adopted as the record's new original.
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
from tests.engine.conftest import DIM

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


@pytest.mark.parametrize("harness", ["qdrant-local"], indirect=True)
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
