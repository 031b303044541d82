"""The connector contract: the same test bodies against every real backend.

Each test builds its collection with the backend's *native* client (the harness), then drives it
through ``connectors.open_store`` and checks the result with the native client again. Tests that
only read the collection, or whose writes to it are refused (those check natively that nothing
changed), share one collection per backend (``small``); a test that writes builds its own.

``milvus-lite-server`` is left out (tests/conftest.py ``TWIN_HARNESSES``): its engine is the
embedded ``milvus-lite``'s and its connector path (``milvus+http``) ``milvus-2.3.5``'s.
"""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

import connectors
from connectors import (
    CollectionNotFound,
    ConnectionFailed,
    InvalidVectors,
    LabelledQuery,
    StateRecord,
    UnknownIds,
    UnsupportedCollection,
)
from tests.backends import random_vectors
from tests.conftest import TWIN_HARNESSES, harness_without

harness = harness_without(*TWIN_HARNESSES)

DIM = 16
#: More than Milvus' 16,384-row query window and than three of Chroma's 5,461-record batches.
BIG_N = 20_000


def similarity(metric: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The contract's score convention: higher is better."""
    q = queries.astype(np.float64)
    v = vectors.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return q @ v.T
    if metric == "dot":
        return q @ v.T
    return -(((q[:, None, :] - v[None, :, :]) ** 2).sum(-1))


class Coll:
    def __init__(self, name, ids, vectors):
        self.name, self.ids, self.vectors = name, list(ids), vectors


def _create_small(harness, name: str) -> Coll:
    """300 records with everything the backend can hold beside the vector (dot metric, so the
    stored vectors are exactly the inserted ones)."""
    ids = harness.make_ids(300)
    vecs = random_vectors(300, DIM, seed=1)
    harness.drop(name)
    harness.create(name, ids, vecs, metric="dot", rich=True)
    return Coll(name, ids, vecs)


@pytest.fixture(scope="module")
def small(harness):
    """The shared collection of the tests that leave it as it was (they read it, or check that a
    refused write changed nothing); logs and states they create are named after their test."""
    coll = _create_small(harness, "contract_small_" + harness.name.replace("-", "_").replace(".", "_"))
    yield coll
    harness.drop(coll.name)


@pytest.fixture
def own_small(harness, collection_name):
    """A collection like ``small`` for a test that writes to it."""
    yield _create_small(harness, collection_name)
    harness.drop(collection_name)


@pytest.fixture
def store(harness, small):
    with connectors.open_store(harness.uri(small.name)) as s:
        yield s


def assert_untouched(harness, coll: Coll, before_snapshot, before_vectors, before_count):
    assert harness.count(coll.name) == before_count
    assert harness.snapshot(coll.name) == before_snapshot
    after = harness.vectors(coll.name)
    assert after.keys() == before_vectors.keys()
    for i, v in before_vectors.items():
        assert np.array_equal(after[i], v), f"vector of {i!r} changed"


# -- describe ---------------------------------------------------------------------------------------


def test_describe_reports_the_collection(harness, small, store):
    info = store.describe()
    assert info.backend == harness.backend
    assert info.collection == small.name
    assert info.dimension == DIM
    assert info.metric == "dot"
    assert info.id_type == harness.id_types[0]
    assert info.count == 300


# -- reading ----------------------------------------------------------------------------------------


def test_a_large_collection_is_read_once_per_id_and_updated_past_one_server_batch(harness, collection_name):
    """20,000 records: every id exactly once through iter_vectors at two batch sizes (pages cross
    Milvus' 16,384-row window and Chroma's batch cap), then 6,667 of them updated in one call (more
    than one server batch: Chroma's max is 5,461 here) and read back with the native client."""
    ids = harness.make_ids(BIG_N)
    vecs = random_vectors(BIG_N, 8, seed=2)
    harness.create(collection_name, ids, vecs, metric="dot", rich=False)
    try:
        with connectors.open_store(harness.uri(collection_name)) as s:
            for batch_size in (1000, 7777):
                seen = collections.Counter()
                got: dict = {}
                for batch_ids, batch_vecs in s.iter_vectors(batch_size=batch_size):
                    assert len(batch_ids) == batch_vecs.shape[0] <= batch_size
                    assert batch_vecs.dtype == np.float32 and batch_vecs.shape[1] == 8
                    seen.update(batch_ids)
                    got.update(zip(batch_ids, batch_vecs))
                assert len(seen) == BIG_N, batch_size
                assert max(seen.values()) == 1, f"an id was returned twice (batch_size={batch_size})"
                assert set(seen) == set(ids)
                assert np.array_equal(np.stack([got[i] for i in ids]), vecs), batch_size
            target = ids[::3]
            new = random_vectors(len(target), 8, seed=4)
            assert len(target) > 5_461
            assert s.update_vectors(target, new) == len(target)
        after = harness.vectors(collection_name)
        assert np.array_equal(np.stack([after[i] for i in target]), new)
        untouched = sorted(set(range(BIG_N)) - set(range(0, BIG_N, 3)))
        assert np.array_equal(np.stack([after[ids[j]] for j in untouched]), vecs[untouched])
        assert harness.count(collection_name) == BIG_N
    finally:
        harness.drop(collection_name)


def assert_batch_size_is_checked(read) -> None:
    """``read(batch_size=...)`` refuses every bad size the same way (the data, the log and the state
    are read with the same rule: this test, test_query_log_round_trips, test_state_collection_round_trips)."""
    for bad in (0, -5, True, 2.0, "100", None):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            next(iter(read(batch_size=bad)))
    # numpy integers (from an array of sizes, say) are accepted: the read starts and yields
    assert next(iter(read(batch_size=np.int64(2))))


def test_a_bad_batch_size_is_refused_the_same_way_everywhere(small, store):
    assert_batch_size_is_checked(store.iter_vectors)


def test_get_vectors_keeps_request_order_and_reports_missing(harness, small, store):
    unknown = harness.make_ids(1, offset=10_000)[0]
    wrong_type = "not-an-int" if isinstance(small.ids[0], int) else 123456789
    request = [small.ids[5], unknown, small.ids[2], small.ids[5], wrong_type]
    found, vecs, missing = store.get_vectors(request)
    assert found == [small.ids[5], small.ids[2]]
    assert np.array_equal(vecs, small.vectors[[5, 2]])
    assert vecs.dtype == np.float32
    assert missing == [unknown, wrong_type]
    found, vecs, missing = store.get_vectors([])
    assert found == [] and vecs.shape == (0, DIM) and missing == []


# -- writing ----------------------------------------------------------------------------------------


def test_update_vectors_changes_only_the_vectors(harness, own_small):
    """A verified update (ids 10-59) and an unverified one (ids 100-149) on the same collection."""
    coll = own_small
    snap, vecs0, count0 = harness.snapshot(coll.name), harness.vectors(coll.name), harness.count(coll.name)
    colls0 = sorted(harness.collections())
    targets = {True: coll.ids[10:60], False: coll.ids[100:150]}
    new = {True: random_vectors(50, DIM, seed=99), False: random_vectors(50, DIM, seed=98)}
    with connectors.open_store(harness.uri(coll.name)) as store:
        for verify in (True, False):
            assert store.update_vectors(targets[verify], new[verify], verify=verify) == 50
        after = harness.vectors(coll.name)
        for verify in (True, False):
            for i, v in zip(targets[verify], new[verify]):
                assert np.array_equal(after[i], v), f"verify={verify}: {i!r} not written"
        for i in coll.ids[:10] + coll.ids[60:100] + coll.ids[150:]:
            assert np.array_equal(after[i], vecs0[i])
        assert harness.snapshot(coll.name) == snap, "payload/metadata/documents/other fields changed"
        assert harness.count(coll.name) == count0
        assert sorted(harness.collections()) == colls0
        # and the store itself reads the new values back
        for verify in (True, False):
            found, got, missing = store.get_vectors(targets[verify])
            assert found == targets[verify] and not missing and np.array_equal(got, new[verify])


def test_update_with_unknown_ids_is_refused_and_writes_nothing(harness, small, store):
    snap, vecs0, count0 = harness.snapshot(small.name), harness.vectors(small.name), harness.count(small.name)
    unknown = harness.make_ids(2, offset=50_000)
    for verify in (True, False):
        with pytest.raises(UnknownIds) as err:
            store.update_vectors(small.ids[:5] + unknown, random_vectors(7, DIM, seed=5), verify=verify)
        assert sorted(map(str, err.value.ids)) == sorted(map(str, unknown))
        assert small.name in str(err.value)
        assert_untouched(harness, small, snap, vecs0, count0)


BAD_VECTORS = {
    "wrong-dimension": (random_vectors(5, DIM + 1), "dimension"),
    "nan": (np.where(np.eye(5, DIM, dtype=bool), np.nan, 1.0).astype(np.float32), "NaN"),
    "inf": (np.full((5, DIM), np.inf, dtype=np.float32), "NaN or inf"),
    "length-mismatch": (random_vectors(4, DIM), "4 vectors for 5 ids"),
    "float32-overflow": (np.full((5, DIM), 1e39), "NaN or inf"),  # overflows float32
}


def test_update_with_bad_vectors_is_refused_and_writes_nothing(harness, small, store):
    snap, vecs0, count0 = harness.snapshot(small.name), harness.vectors(small.name), harness.count(small.name)
    for bad, message in BAD_VECTORS.values():
        with pytest.raises(InvalidVectors, match=message):
            store.update_vectors(small.ids[:5], bad)
        assert_untouched(harness, small, snap, vecs0, count0)


def test_update_with_duplicate_ids_is_refused(harness, small, store):
    snap, vecs0, count0 = harness.snapshot(small.name), harness.vectors(small.name), harness.count(small.name)
    with pytest.raises(InvalidVectors, match="duplicate"):
        store.update_vectors([small.ids[0], small.ids[1], small.ids[0]], random_vectors(3, DIM))
    assert_untouched(harness, small, snap, vecs0, count0)


def test_each_id_type_round_trips(harness, collection_name):
    for k, id_type in enumerate(harness.id_types):
        name = f"{collection_name}_{k}"
        ids = harness.make_ids(40, id_type)
        vecs = random_vectors(40, DIM, seed=6)
        harness.create(name, ids, vecs, metric="dot", rich=True)
        try:
            with connectors.open_store(harness.uri(name)) as s:
                assert s.describe().id_type == id_type
                read = [i for batch, _ in s.iter_vectors(batch_size=16) for i in batch]
                assert sorted(read, key=str) == sorted(ids, key=str)
                assert all(type(i) is type(ids[0]) for i in read), f"{id_type} ids changed type"
                found, _, missing = s.get_vectors(ids[:3])
                assert found == ids[:3] and missing == []
                assert s.update_vectors(ids[:3], vecs[:3] * 2) == 3
                res = s.search(vecs[:2] * 2, k=3)
                assert all(type(i) is type(ids[0]) for row in res.ids for i in row)
                assert res.ids[0][0] == ids[0]
        finally:
            harness.drop(name)


# -- search -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_describe_and_search_scores_follow_the_metric(harness, collection_name, metric):
    """describe() reports the collection's metric; search scores follow the contract's convention
    for it (higher is better) and find the true top 10 (ANN indexes may miss a few)."""
    n = 400
    ids = harness.make_ids(n)
    vecs = random_vectors(n, DIM, seed=7)
    harness.create(collection_name, ids, vecs, metric=metric, rich=False)
    queries = random_vectors(15, DIM, seed=8)
    try:
        with connectors.open_store(harness.uri(collection_name)) as s:
            assert s.describe().metric == metric
            res = s.search(queries, k=10)
        sims = similarity(metric, queries, vecs)
        pos = {i: j for j, i in enumerate(ids)}
        hits = 0
        for qi, row in enumerate(res.ids):
            assert len(row) == 10
            scores = res.scores[qi]
            assert np.all(np.diff(scores) <= 1e-6), "results not sorted best first"
            expected = sims[qi, [pos[i] for i in row]]
            np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
            truth = {ids[j] for j in np.argsort(-sims[qi], kind="stable")[:10]}
            hits += len(truth & set(row))
        assert hits / (10 * len(queries)) >= 0.9  # ANN indexes may miss a few
    finally:
        harness.drop(collection_name)


def test_search_never_returns_an_excluded_id(harness, small, store):
    queries = small.vectors[:20] + 0.01
    sims = similarity("dot", queries, small.vectors)
    top = np.argsort(-sims, axis=1, kind="stable")
    exclude = {small.ids[j] for j in top[:, :5].ravel()} | set(small.ids[100:200])
    res = store.search(queries, k=8, exclude=exclude)
    allowed = np.array([i not in exclude for i in small.ids])
    hits = 0
    for qi, row in enumerate(res.ids):
        assert len(row) == 8
        assert not (set(row) & exclude)
        truth = [small.ids[j] for j in top[qi] if allowed[j]][:8]
        hits += len(set(truth) & set(row))
    assert hits / (8 * len(queries)) >= 0.9
    # k larger than what is left: returns what is left, padded with -inf scores
    res = store.search(queries[:2], k=250, exclude=set(small.ids[:100]))
    assert [len(r) for r in res.ids] == [200, 200]
    assert np.isneginf(res.scores[:, 200:]).all()


# -- query log --------------------------------------------------------------------------------------


def _log_entries(harness, n: int, dim: int = DIM, start: int = 0) -> list[LabelledQuery]:
    ids = harness.make_ids(50)
    rng = np.random.default_rng(10 + start)
    entries = []
    for j in range(start, start + n):
        rel = [ids[(j * 3 + t) % 50] for t in range(1 + j % 3)]
        entries.append(
            LabelledQuery(
                query_id=f"q-{j:04d}",
                vector=rng.standard_normal(dim).astype(np.float32),
                relevant_ids=rel,
                grades=None if j % 2 else [float(1 + (t % 2)) for t in range(len(rel))],
                timestamp=1_700_000_000.5 + j,
                split=[None, "train", "val", "test"][j % 4],
            )
        )
    return entries


def _assert_same_log(got: list[LabelledQuery], expected: list[LabelledQuery]):
    by_id = {e.query_id: e for e in got}
    assert len(by_id) == len(got), "duplicate query ids read back"
    assert sorted(by_id) == sorted(e.query_id for e in expected)
    for e in expected:
        g = by_id[e.query_id]
        assert np.array_equal(np.asarray(g.vector, dtype=np.float32), e.vector)
        assert g.relevant_ids == e.relevant_ids
        assert all(type(a) is type(b) for a, b in zip(g.relevant_ids, e.relevant_ids))
        assert (g.grades is None and e.grades is None) or list(map(float, g.grades)) == e.grades
        assert g.timestamp == pytest.approx(e.timestamp, abs=1e-3)
        assert g.split == e.split


def test_query_log_round_trips(harness, small, store):
    log = f"{small.name}_rt_log"
    assert not store.log_exists(log)
    with pytest.raises(CollectionNotFound, match=log):
        list(store.read_log(log))
    entries = _log_entries(harness, 120)
    try:
        assert store.append_log(log, entries[:70]) == 70
        assert store.append_log(log, entries[70:]) == 50
        assert store.log_exists(log)
        _assert_same_log(list(store.read_log(log, batch_size=32)), entries)
        assert_batch_size_is_checked(lambda batch_size: store.read_log(log, batch_size=batch_size))
        # the same query id replaces its entry instead of duplicating it
        changed = _log_entries(harness, 1, start=5)[0]
        changed.relevant_ids = changed.relevant_ids[:1]
        changed.grades = None
        store.append_log(log, [changed])
        expected = [changed if e.query_id == changed.query_id else e for e in entries]
        _assert_same_log(list(store.read_log(log)), expected)
    finally:
        harness.drop(log)


def test_query_log_with_wrong_dimension_is_refused(harness, small, store):
    log = f"{small.name}_dim_log"
    try:
        store.append_log(log, _log_entries(harness, 3))
        with pytest.raises(InvalidVectors, match="dimension"):
            store.append_log(log, _log_entries(harness, 2, dim=DIM + 2, start=10))
        assert len(list(store.read_log(log))) == 3
    finally:
        harness.drop(log)


# -- state ------------------------------------------------------------------------------------------


def test_state_collection_round_trips(harness, small, store):
    state = store.state(f"{small.name}_rt_state")
    try:
        assert not state.exists()
        state.create(DIM)
        state.create(DIM)  # idempotent
        assert state.exists()
        n = 2_500
        vecs = random_vectors(n, DIM, seed=11)
        recs = [StateRecord(f"k{j}", vecs[j], {"fp": f"{j:08x}", "run": j % 3, "nested": {"a": [1, 2.5, "x"]}})
                for j in range(n)]
        state.put("original", recs)
        state.put("run", [StateRecord("k0", None, {"gamma": 0.125, "ids": [1, "two"]})])  # same key, other kind
        got = {r.key: r for r in state.get("original", ["k0", "k7", "nope"])}
        assert sorted(got) == ["k0", "k7"]
        assert got["k7"].vector.dtype == np.float32
        assert got["k7"].vector.tobytes() == vecs[7].tobytes(), "state vectors must round-trip bit-exactly"
        assert got["k7"].meta == recs[7].meta
        (run,) = state.get("run", ["k0"])
        assert run.meta == {"gamma": 0.125, "ids": [1, "two"]}
        seen = collections.Counter(r.key for batch in state.scan("original", batch_size=1000) for r in batch)
        assert len(seen) == n and max(seen.values()) == 1
        assert_batch_size_is_checked(lambda batch_size: state.scan("original", batch_size=batch_size))
        state.put("original", [StateRecord("k1", vecs[0], {"fp": "changed"})])  # replace
        (r1,) = state.get("original", ["k1"])
        assert r1.meta == {"fp": "changed"} and np.array_equal(r1.vector, vecs[0])
        # meta alone, for records stored with these vectors: the vectors stay bit-exact
        state.put_meta("original", [StateRecord(f"k{j}", vecs[j], {"fp": "later", "j": j}) for j in (3, 4)])
        got = {r.key: r for r in state.get("original", ["k3", "k4", "k5"])}
        assert got["k3"].meta == {"fp": "later", "j": 3} and got["k4"].meta == {"fp": "later", "j": 4}
        assert got["k4"].vector.tobytes() == vecs[4].tobytes() and got["k5"].meta == recs[5].meta
        state.delete("original", ["k1", "k2", "missing"])
        assert {r.key for r in state.get("original", ["k1", "k2", "k3"])} == {"k3"}
        assert [r.key for b in state.scan("run") for r in b] == ["k0"]
        assert harness.count(small.name) == 300  # the data collection is untouched
    finally:
        state.drop()
    assert not state.exists()


# -- errors -----------------------------------------------------------------------------------------


def test_missing_collection_is_reported_and_not_created(harness):
    before = sorted(harness.collections())
    with connectors.open_store(harness.uri("no_such_collection")) as s:
        with pytest.raises(CollectionNotFound, match="no_such_collection"):
            s.describe()
        with pytest.raises(CollectionNotFound, match="no_such_collection"):
            list(s.iter_vectors())
        with pytest.raises(CollectionNotFound, match="no_such_collection"):
            s.update_vectors(harness.make_ids(1), random_vectors(1, DIM))
    assert sorted(harness.collections()) == before


def test_unreachable_server_is_reported(harness):
    uri = harness.unreachable_uri("docs")
    if uri is None:
        pytest.skip(f"{harness.name} is embedded: there is no server to be unreachable")
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed, match="127.0.0.1"):
        with connectors.open_store(uri) as s:
            s.describe()
    assert time.monotonic() - t0 < 60


def test_wrong_credentials_are_reported(harness, monkeypatch):
    spec = harness.bad_credentials_uri("docs")
    if spec is None:
        pytest.skip(f"{harness.name} does not enforce credentials in this test setup")
    uri, env = spec
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(connectors.AuthenticationFailed):
        with connectors.open_store(uri) as s:
            s.describe()


def test_auto_id_collection_is_refused(harness, collection_name):
    if not harness.create_auto_id(collection_name, DIM):
        pytest.skip(f"{harness.name} has no auto-generated primary keys")
    try:
        with connectors.open_store(harness.uri(collection_name)) as s:
            with pytest.raises(UnsupportedCollection, match="auto"):
                s.describe()
            with pytest.raises(UnsupportedCollection, match="auto"):
                s.update_vectors([1], random_vectors(1, DIM))
    finally:
        harness.drop(collection_name)
