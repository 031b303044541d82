"""Qdrant conditional writes (URI option ``version_field=``): a point is written only while the
application's version field still holds the value read with its vector."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
from connectors import UnsupportedCollection
from tests.backends import random_vectors

N, DIM = 80, 8


@pytest.fixture
def versioned(harness_qdrant_local, collection_name):
    h = harness_qdrant_local
    ids = h.make_ids(N)
    h.create(collection_name, ids, random_vectors(N, DIM, seed=2), metric="dot", rich=False)
    yield h, collection_name, ids
    h.drop(collection_name)


def set_versions(h, name, ids, versions) -> None:
    for i, v in zip(ids, versions):
        h.client.set_payload(name, {"updated_at": v}, points=[i], wait=True)


def the_application_rewrites(h, name, record, vector, version) -> None:
    from qdrant_client import models

    h.client.update_vectors(name, points=[models.PointVectors(id=record, vector=vector.tolist())], wait=True)
    h.client.set_payload(name, {"updated_at": version}, points=[record], wait=True)


@pytest.mark.parametrize("kind", ["one version", "a version each", "floats", "no field yet"])
def test_only_points_whose_version_did_not_move_are_written(versioned, kind):
    h, name, ids = versioned
    versions = {"one version": [7] * N, "a version each": [f"v{j}" for j in range(N)],
                "floats": [1.5 + j for j in range(N)], "no field yet": None}[kind]
    if versions is not None:
        set_versions(h, name, ids, versions)
    with connectors.open_store(h.uri(name) + "&version_field=updated_at") as store:
        info = store.describe()
        assert info.conditional_writes and info.details["version_field"] == "updated_at"
        snap = store.get_versioned(ids)
        assert snap.ids == ids and not snap.missing
        assert snap.versions == (versions or [None] * N)
        moved = ids[::9]
        theirs = random_vectors(len(moved), DIM, seed=8)
        for i, v in zip(moved, theirs):
            the_application_rewrites(h, name, i, v, "app-1")
        ours = random_vectors(N, DIM, seed=9)
        assert store.update_vectors_if(snap.ids, ours, snap.versions) == N
    stored = h.vectors(name)
    for j, i in enumerate(ids):
        want = theirs[moved.index(i)] if i in moved else ours[j]
        assert stored[i].tobytes() == want.tobytes(), (kind, i)


def test_without_the_option_nothing_is_conditional(versioned):
    h, name, ids = versioned
    with connectors.open_store(h.uri(name)) as store:
        assert not store.describe().conditional_writes
        snap = store.get_versioned(ids[:3])
        assert snap.versions == [None] * 3
        with pytest.raises(UnsupportedCollection, match="no conditional vector write"):
            store.update_vectors_if(ids[:3], random_vectors(3, DIM), [None] * 3)


def test_a_version_field_that_is_not_a_scalar_is_refused(versioned):
    h, name, ids = versioned
    h.client.set_payload(name, {"updated_at": [1, 2]}, points=[ids[0]], wait=True)
    with connectors.open_store(h.uri(name) + "&version_field=updated_at") as store:
        with pytest.raises(UnsupportedCollection, match="version field 'updated_at' holds a list"):
            store.get_versioned(ids[:2])
    assert np.array_equal(h.vectors(name)[ids[0]], random_vectors(N, DIM, seed=2)[0])


def test_a_run_and_a_rollback_through_conditional_writes(harness_qdrant_local, collection_name):
    """The sync engine's whole write path with version_field= on a cosine collection (where the
    rollback also spends corrective writes to land the originals bit for bit)."""
    import nudge_sync
    from nudge_sync import SyncOptions
    from tests.engine.test_refusals import make_entries

    h = harness_qdrant_local
    ids = h.make_ids(400)
    vectors = random_vectors(400, 16, seed=5, normalize=True)
    h.create(collection_name, ids, vectors, metric="cosine", rich=False)
    set_versions(h, collection_name, ids, [3] * len(ids))
    before = h.vectors(collection_name)
    try:
        with connectors.open_store(h.uri(collection_name) + "&version_field=updated_at") as store:
            run = nudge_sync.sync(store, SyncOptions(batch_size=16), entries=make_entries(ids, np.stack([before[i] for i in ids])))
            assert run.status == "written" and run.counts["adopted_during_run"] == 0
            undone = nudge_sync.rollback(store, batch_size=16)
            assert undone["restored"] == len(run.written_ids) and undone["adopted_during_rollback"] == 0
            assert nudge_sync.status(store)["nudged"] == 0
        after = h.vectors(collection_name)
        assert max(float(np.max(np.abs(after[i] - before[i]))) for i in ids) <= 2.0**-23
    finally:
        h.drop(collection_name)
        h.drop(f"{collection_name}_nudge_state")
