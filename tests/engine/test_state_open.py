"""Opening a state collection (``nudge_sync.engine.state_open``) on every backend: the rule for
states of earlier versions, which wrote no marker, and the marker's checks. In-process because a
state "of an earlier version" can only be made by writing it without the marker, which no command
does any more; the refusals users meet are in tests/user/test_state_guard.py.

The tests share one data collection per backend (none writes to it); the state collections each
test makes are dropped after it. ``milvus-lite-server`` is left out (tests/conftest.py
``TWIN_HARNESSES``)."""

from __future__ import annotations

import pytest

import connectors
from connectors import StateRecord
from nudge_sync.engine.errors import RefusedInput
from nudge_sync.engine.state import MARKER, MARKER_KEY, Original, SyncState
from nudge_sync.engine.state_open import open_state
from tests.backends import random_vectors
from tests.conftest import TWIN_HARNESSES, harness_without
from tests.engine.conftest import DIM, N

harness = harness_without(*TWIN_HARNESSES)


@pytest.fixture(scope="module")
def _data(harness):
    """The rich dot-product collection of tests/engine/conftest.py ``coll``, built once per backend."""
    name = "state_open_" + harness.name.replace("-", "_").replace(".", "_")
    ids = harness.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    harness.drop(name)
    harness.create(name, ids, vectors, metric="dot", rich=True)
    yield name, ids, vectors
    harness.drop(name)


@pytest.fixture
def coll(harness, _data):
    """(name, ids, vectors) of the shared collection; the state collections the test made beside it
    are dropped afterwards."""
    yield _data
    for name in harness.collections():
        if name.startswith(_data[0]) and name != _data[0]:
            harness.drop(name)


def _legacy_state(store, name: str, ids, vectors) -> SyncState:
    """A state as earlier versions left it: originals and a run, no marker."""
    old = SyncState(store.state(name))  # no ``serves``: ensure() writes no marker
    old.ensure(DIM)
    old.put_originals([Original(ids[0], vectors[0], None, False, "r1")])
    old.put_run("r1", {"run_id": "r1", "status": "written", "started": 1.0})
    return old


def test_a_state_of_an_earlier_version_is_accepted_and_marked_by_its_first_lock(harness, coll):
    name, ids, vectors = coll
    with connectors.open_store(harness.uri(name)) as store:
        info = store.describe()
        _legacy_state(store, f"{name}_nudge_state", ids, vectors)
        state = open_state(store, info, None)
        assert not state.marked and state.marker() is None  # opening writes nothing
        state.release(state.acquire(60.0, settle=0.0))
        marker = open_state(store, info, None).marker()
        assert (marker["collection"], marker["dimension"], marker["metric"]) == (name, DIM, info.metric)


def test_an_unmarked_collection_with_any_other_record_is_refused(harness, coll):
    name, ids, vectors = coll
    with connectors.open_store(harness.uri(name)) as store:
        info = store.describe()
        old = _legacy_state(store, f"{name}_nudge_state", ids, vectors)
        old.collection.put("notes", [StateRecord("n", None, {"by": "hand"})])
        with pytest.raises(RefusedInput, match="1 of its 3 records are not nudge-sync state records"):
            open_state(store, info, None)
        empty = SyncState(store.state(f"{name}_empty"))
        empty.ensure(DIM)
        with pytest.raises(RefusedInput, match="empty and has no nudge-sync marker"):
            open_state(store, info, f"{name}_empty")


def test_a_marker_of_another_collection_or_metric_is_refused(harness, coll):
    name, ids, vectors = coll
    with connectors.open_store(harness.uri(name)) as store:
        info = store.describe()
        state = open_state(store, info, None)
        state.ensure(DIM)
        other = "cosine" if info.metric != "cosine" else "dot"
        state.collection.put(MARKER, [StateRecord(MARKER_KEY, None, {**state.marker(), "metric": other})])
        with pytest.raises(RefusedInput, match=f"made for collection {name!r} .*{other}"):
            open_state(store, info, None)


def test_entries_failing_their_checksums_are_refused_or_skipped(harness, coll):
    """Checksums survive each database's state storage (float32 vectors, meta as JSON): a true
    entry verifies, an edited original or target does not. The CLI's refusals are in tests/user."""
    from nudge_sync.engine.state import encode_vector
    from nudge_sync.engine.verdicts import load_state

    name, ids, vectors = coll
    with connectors.open_store(harness.uri(name)) as store:
        info = store.describe()
        state = open_state(store, info, None)
        state.ensure(DIM)
        pending = Original(ids[2], vectors[2], None, False, None).with_target(vectors[3], "r1")
        state.put_originals([Original(i, vectors[n], None, False, "r1")
                             for n, i in enumerate(ids[:2])] + [pending])
        _, verdicts = load_state(store, state, info, {}, 100)
        assert len(verdicts) == 3 and state.unverified == []
        edited = Original(ids[0], vectors[0] * 0.5, None, False, "r1").record()
        edited.meta["sum"] = Original(ids[0], vectors[0], None, False, "r1").record().meta["sum"]
        target = pending.record()
        target.meta["target"] = encode_vector(vectors[4])
        state.collection.put("original", [edited, target])
        with pytest.raises(RefusedInput, match=rf"2 entries no longer match.*{ids[0]!r} \(original\).*\(target\)"):
            load_state(store, state, info, {}, 100)
        state.skip_unverified = True
        _, verdicts = load_state(store, state, info, {}, 100)
        assert sorted(map(repr, state.unverified)) == sorted([repr(ids[0]), repr(ids[2])])
        assert verdicts[ids[0]].kind == "adopted" and verdicts[ids[1]].kind != "adopted"
