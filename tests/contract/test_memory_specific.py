"""What only the in-memory store has: its URI, one database per name shared by every open in the
process, databases kept apart, and its cosine collections re-normalising like Chroma's -- checked
against a real Chroma cosine collection given the same vectors, not against the store's own design."""

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


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_dot_and_l2_collections_store_what_they_are_sent(db_name, metric):
    vectors = random_vectors(50, 8, seed=2) * 3.0
    connectors.create_collection(f"memory://{db_name}?collection=c", list(range(50)), vectors, metric=metric)
    with connectors.open_store(f"memory://{db_name}?collection=c") as store:
        info = store.describe()
        assert not info.renormalises and info.round_trip_tolerance == 0.0
        store.update_vectors(list(range(50)), vectors[::-1].copy())
        _, back, _ = store.get_vectors(list(range(50)))
    assert back.tobytes() == vectors[::-1].astype(np.float32).tobytes()


def cosine_round_trips(uri: str, ids: list, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """What a cosine collection gives back of ``vectors``: created with them, then updated with
    them scaled, then updated with what it gave back (is a stored vector a fixed point?)."""
    out = {}
    with connectors.open_store(uri) as store:
        assert store.describe().renormalises
        out["created"] = store.get_vectors(ids)[1]
        store.update_vectors(ids, vectors * 0.5)
        out["updated"] = store.get_vectors(ids)[1]
        store.update_vectors(ids, out["updated"])
        out["rewritten"] = store.get_vectors(ids)[1]
    return out


@pytest.fixture
def congruent(harness_chroma_persistent, collection_name, db_name):
    """The same unnormalised vectors through a memory cosine collection and a real Chroma one."""
    h = harness_chroma_persistent
    ids = h.make_ids(300)
    vectors = random_vectors(300, 16, seed=2) * 3.0
    h.create(collection_name, ids, vectors, metric="cosine", rich=False)
    try:
        chroma = cosine_round_trips(h.uri(collection_name), ids, vectors)
    finally:
        h.drop(collection_name)
    connectors.create_collection(f"memory://{db_name}?collection=c", ids, vectors, metric="cosine")
    memory = cosine_round_trips(f"memory://{db_name}?collection=c", ids, vectors)
    return vectors, chroma, memory


def test_cosine_collections_renormalise_like_chroma(congruent):
    """The memory store stands in for the re-normalising databases in the engine tests: what it
    gives back must behave like what a real Chroma cosine collection gives back for the same
    vectors -- not what they were sent, within the same tolerance of it and of each other, and not
    always a fixed point of the write (the case rollback's corrective writes exist for)."""
    vectors, chroma, memory = congruent
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    for step, sent in (("created", vectors), ("updated", vectors * 0.5)):
        for name, got in (("chroma", chroma[step]), ("memory", memory[step])):
            off = np.abs(got - sent) / norms
            assert 0 < off.max() <= 1e-6, (name, step, off.max())  # re-normalised, within the tolerance
            assert not np.array_equal(got, sent), (name, step)
        assert np.abs(memory[step] - chroma[step]).max() <= 2.0**-23 * 4 * norms.max(), step
    for name, got in (("chroma", chroma), ("memory", memory)):
        moved = int((got["rewritten"] != got["updated"]).any(axis=1).sum())
        assert 0 < moved < len(vectors), f"{name}: {moved} of {len(vectors)} stored vectors moved when rewritten"


def test_cosine_collections_give_back_chromas_bits(congruent):
    """The memory store keeps a cosine vector as Chroma does (a sequential float32 sum of squares, times
    its float32 reciprocal, times the norm): the same bits at every step, not only the same tolerance."""
    _, chroma, memory = congruent
    for step in ("created", "updated", "rewritten"):
        assert memory[step].tobytes() == chroma[step].tobytes(), step


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
