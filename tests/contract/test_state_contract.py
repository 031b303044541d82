"""One base for every database's state collection (issue 17 item 4): the same dimension check and
the same name rule, whatever the backend; counting and measuring a collection nudge-sync did not
create (the engine uses both to recognise its own state).

The tests share one data collection per backend (none writes to it; each state collection is its
test's own and dropped by it). ``milvus-lite-server`` is left out (tests/conftest.py
``TWIN_HARNESSES``)."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
from connectors import InvalidVectors, StateRecord, UnsupportedCollection
from tests.backends import random_vectors
from tests.conftest import TWIN_HARNESSES, harness_without

harness = harness_without(*TWIN_HARNESSES)

DIM = 16


@pytest.fixture(scope="module")
def data(harness):
    name = "state_contract_" + harness.name.replace("-", "_").replace(".", "_")
    harness.drop(name)
    harness.create(name, harness.make_ids(20), random_vectors(20, DIM, seed=3), metric="dot")
    yield name
    harness.drop(name)


def test_a_state_collection_of_another_dimension_is_refused(harness, data):
    name = f"{data}_state"
    with connectors.open_store(harness.uri(data)) as store:
        state = store.state(name)
        try:
            state.create(DIM)
            state.put("original", [StateRecord("k", random_vectors(1, DIM)[0], {"x": 1})])
            with pytest.raises(UnsupportedCollection, match=rf"holds {DIM}-d vectors.*serves has {2 * DIM}-d"):
                store.state(name).create(2 * DIM)
            assert state.dimension() == DIM and state.count() == 1  # untouched
            store.state(name).create(DIM)  # the same dimension opens it again
        finally:
            state.drop()


def test_count_and_dimension_of_a_collection_nudge_sync_did_not_create(harness, data):
    """The user's own collection read as a state: every record counted, none of them a state record."""
    with connectors.open_store(harness.uri(data)) as store:
        foreign = store.state(data)
        try:  # a collection of several named vectors (Qdrant) has no one dimension to report
            assert foreign.dimension() == DIM
        except UnsupportedCollection:
            pass
        assert foreign.count() == 20
        assert [r for batch in foreign.scan("original") for r in batch] == []
    assert harness.count(data) == 20


def test_a_bad_state_name_is_refused_before_any_call(harness, data):
    before = sorted(harness.collections())
    with connectors.open_store(harness.uri(data)) as store:
        for bad in ("", " docs", "docs ", "a/b", "..", "x\ny", "é" * 256):
            with pytest.raises((InvalidVectors, connectors.InvalidURI, UnsupportedCollection)):
                store.state(bad).create(DIM)
            assert sorted(harness.collections()) == before, repr(bad)
    assert np.isfinite(harness.count(data))
