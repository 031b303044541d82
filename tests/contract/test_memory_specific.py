"""What only the in-memory store has: its URI, one database per name shared by every open in the
process, databases kept apart, and its cosine collections re-normalising like Chroma's."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
from connectors import CollectionNotFound, ConnectorError, InvalidURI, LabelledQuery, StateRecord
from connectors.memory import database, forget
from tests.backends import random_vectors


@pytest.fixture
def db_name(request):
    name = f"spec-{request.node.name}"
    yield name
    forget(name)


@pytest.mark.parametrize("uri", ["memory:name?collection=c", "memory:///abs?collection=c", "memory://?collection=c",
                                 "memory+http://x?collection=c", "memory://a/b?collection=c",
                                 "memory://a?collection=c&vector=v"])
def test_malformed_memory_uris_are_refused(uri):
    with pytest.raises(InvalidURI):
        connectors.parse_uri(uri)


def test_the_uri_names_the_database_and_redacts_to_itself():
    config = connectors.parse_uri("memory://shared-db?collection=docs")
    assert (config.backend, config.transport, config.location, config.collection) == ("memory", "memory",
                                                                                        "shared-db", "docs")
    assert config.redacted() == "memory://shared-db?collection=docs"


def test_every_open_of_one_name_sees_the_same_data_and_other_names_see_none(db_name):
    ids, vectors = [3, 1, 2], random_vectors(3, 4, seed=1)
    connectors.create_collection(f"memory://{db_name}?collection=docs", ids, vectors, metric="dot",
                                 payloads=[{"n": i} for i in ids], documents=["a", "b", "c"])
    with connectors.open_store(f"memory://{db_name}?collection=docs") as first:
        first.update_vectors([1], vectors[:1] * 2)
        first.append_log("docs_feedback", [LabelledQuery("q", vectors[0], [3], timestamp=1.7e9)])
        state = first.state("docs_state")
        state.create(4)
        state.put("run", [StateRecord("r1", None, {"status": "written"})])
    with connectors.open_store(f"memory://{db_name}?collection=docs") as second:
        found, back, _ = second.get_vectors([1, 3])
        assert found == [1, 3] and back[0].tobytes() == (vectors[0] * 2).tobytes()
        assert [e.query_id for e in second.read_log("docs_feedback")] == ["q"]
        assert second.state("docs_state").get("run", ["r1"])[0].meta == {"status": "written"}
    assert database(db_name).get("docs", [2])[2][1] == {"n": 2, "document": "c"}  # payload and document kept
    with connectors.open_store(f"memory://{db_name}-other?collection=docs") as other:
        with pytest.raises(CollectionNotFound):
            other.describe()
    forget(f"{db_name}-other")


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_only_cosine_collections_renormalise(db_name, metric):
    vectors = random_vectors(50, 8, seed=2) * 3.0
    connectors.create_collection(f"memory://{db_name}?collection=c", list(range(50)), vectors, metric=metric)
    with connectors.open_store(f"memory://{db_name}?collection=c") as store:
        info = store.describe()
        assert info.renormalises is (metric == "cosine")
        assert info.round_trip_tolerance == (1e-6 if metric == "cosine" else 0.0)
        store.update_vectors(list(range(50)), vectors)  # the read-back check holds within the tolerance
        _, back, _ = store.get_vectors(list(range(50)))
    if metric == "cosine":
        assert not np.array_equal(back, vectors)  # some rows come back an ulp or so off
        assert np.abs(back - vectors).max() <= 1e-6 * np.linalg.norm(vectors, axis=1).max()
    else:
        assert back.tobytes() == vectors.astype(np.float32).tobytes()


def test_ids_of_the_other_type_are_missing_and_refused_on_update(db_name):
    connectors.create_collection(f"memory://{db_name}?collection=c", ["a", "b"], random_vectors(2, 4), metric="dot")
    with connectors.open_store(f"memory://{db_name}?collection=c") as store:
        assert store.get_vectors([1, "a"])[2] == [1]
        with pytest.raises(connectors.UnknownIds, match="1 id"):
            store.update_vectors([1, "a"], random_vectors(2, 4))


def test_a_closed_store_refuses_calls(db_name):
    connectors.create_collection(f"memory://{db_name}?collection=c", [1], random_vectors(1, 4), metric="dot")
    store = connectors.open_store(f"memory://{db_name}?collection=c")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(ConnectorError, match="closed"):
        store.describe()
