"""Milvus behaviour beyond the generic contract: auto-id refusal, VARCHAR keys that need escaping,
vector field detection, both write paths (partial_update and full rows), partitions, exclusion
search with many ids, Strong reads, credentials, Milvus Lite paths, log and state formats.

Every test runs against the real engines of the selected Milvus harnesses (``milvus-lite``,
``milvus-2.3.5``); tests that need a capability only some engines have say so in their skip
message. ``milvus-lite-server`` is left out (tests/conftest.py ``TWIN_HARNESSES``): it runs
``milvus-lite``'s engine behind the ``milvus+http`` path of ``milvus-2.3.5``, and no test here
stops a server.
"""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

pymilvus = pytest.importorskip("pymilvus")

from pymilvus import DataType  # noqa: E402

import connectors  # noqa: E402
from connectors import (  # noqa: E402
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    InvalidURI,
    InvalidVectors,
    LabelledQuery,
    StateRecord,
    UnsupportedCollection,
)
from connectors.milvus import client as milvus_client_module  # noqa: E402
from connectors.milvus import layout as milvus_layout, log as milvus_log, search as milvus_search  # noqa: E402
from connectors._uri import parse_uri  # noqa: E402
from connectors.milvus import MilvusStore  # noqa: E402
from tests._procs import closed_port  # noqa: E402
from tests.backends import random_vectors  # noqa: E402
from tests.backends.milvus import MilvusHarness  # noqa: E402
from tests.conftest import TWIN_HARNESSES, fixture_name, selected_harnesses  # noqa: E402

MILVUS = [n for n in ("milvus-lite", "milvus-lite-server", "milvus-2.3.5")
          if n in selected_harnesses() and n not in TWIN_HARNESSES]
DIM = 16

#: VARCHAR keys an expression must escape (quotes, backslashes, escapes-lookalikes, control chars).
AWKWARD_KEYS = ['a"b', "c\\d", "e'f", "x\\u00ff", "x\\", 'q"', "ü日本", " lead", "tab\tin", "new\nline",
                "x\\n", "xa", "xz", "xÿ", "{}", "[1, 2]", "%s", "pk > 0 or 1 == 1"]


@pytest.fixture(params=MILVUS, scope="module")
def milvus(request) -> MilvusHarness:
    return request.getfixturevalue(fixture_name(request.param))


@pytest.fixture(scope="module")
def plain(milvus) -> str:
    """A pk + ``vector`` collection of 10 records, shared by the tests that only open, describe or
    search it (a collection costs seconds on Milvus 2.3.5); what they create beside it is theirs."""
    name = "milvus_plain_" + milvus.name.replace("-", "_").replace(".", "_")
    milvus.drop(name)
    milvus.create(name, milvus.make_ids(10), random_vectors(10, DIM), rich=False)
    yield name
    milvus.drop(name)


def needs(harness: MilvusHarness, *, modern: bool = False, auth: bool = False, server: bool = False) -> None:
    if modern and not harness.modern:
        pytest.skip(f"{harness.name} ({harness.version}) allows one vector field and no nullable fields")
    if auth and harness.token is None:
        pytest.skip(f"{harness.name} has no authentication")
    if server and not harness.is_server:
        pytest.skip(f"{harness.name} is embedded")


def open_milvus(harness: MilvusHarness, name: str, *, vector: str | None = "vector", **kw) -> MilvusStore:
    uri = harness.uri(name)
    if vector != "vector":
        uri = uri.replace("&vector=vector", "" if vector is None else f"&vector={vector}")
    return MilvusStore(parse_uri(uri), **kw)


def simple_collection(harness: MilvusHarness, name: str, ids, vecs, *, metric: str = "IP", dynamic: bool = True,
                      consistency: str = "Strong", index: bool = True, partitions: tuple[str, ...] = ()) -> None:
    """pk + ``vector`` (+ dynamic fields), created with the native client."""
    client = harness.client
    schema = client.create_schema(auto_id=False, enable_dynamic_field=dynamic)
    if isinstance(ids[0], int):
        schema.add_field("pk", DataType.INT64, is_primary=True)
    else:
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=512)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vecs.shape[1])
    params = client.prepare_index_params()
    params.add_index("vector", index_type="FLAT", metric_type=metric)
    client.create_collection(name, schema=schema, index_params=params if index else None,
                             consistency_level=consistency)
    for p in partitions:
        client.create_partition(name, p)


def rows_of(ids, vecs, **extra):
    return [{"pk": i, "vector": v.tolist(), **{k: f(j) for k, f in extra.items()}} for j, (i, v) in
            enumerate(zip(ids, vecs))]


@pytest.fixture
def cleanup(milvus):
    names: list[str] = []
    yield names
    for n in names:
        milvus.drop(n)


# -- auto-id -------------------------------------------------------------------------------------------


def test_auto_id_collection_is_refused_for_every_operation(milvus, collection_name, cleanup):
    cleanup.append(collection_name)
    assert milvus.create_auto_id(collection_name, DIM)
    before = milvus.vectors(collection_name)
    with open_milvus(milvus, collection_name) as s:
        for call in (s.describe, lambda: list(s.iter_vectors()), lambda: s.get_vectors(list(before)),
                     lambda: s.update_vectors(list(before), random_vectors(len(before), DIM)),
                     lambda: s.search(random_vectors(1, DIM), k=1)):
            with pytest.raises(UnsupportedCollection, match="auto_id primary key.*new primary keys"):
                call()
    after = milvus.vectors(collection_name)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[i], before[i]) for i in before)


# -- VARCHAR keys --------------------------------------------------------------------------------------


def test_awkward_varchar_keys_are_escaped_everywhere(milvus, collection_name, cleanup, monkeypatch):
    cleanup.append(collection_name)
    ids = AWKWARD_KEYS + [f"doc-{i:03d}" for i in range(40)]
    vecs = random_vectors(len(ids), DIM, seed=21)
    simple_collection(milvus, collection_name, ids, vecs)
    milvus.client.insert(collection_name, rows_of(ids, vecs))
    for module in (milvus_layout, milvus_log):
        monkeypatch.setattr(module, "_PAGE_BYTES", 1)  # pages of `batch_size` rows: many cursors
    with open_milvus(milvus, collection_name) as s:
        seen = collections.Counter(i for batch, _ in s.iter_vectors(batch_size=3) for i in batch)
        assert sorted(seen) == sorted(ids) and max(seen.values()) == 1
        found, got, missing = s.get_vectors(AWKWARD_KEYS + ["absent\"key"])
        assert found == AWKWARD_KEYS and missing == ['absent"key']
        assert np.array_equal(got, vecs[: len(AWKWARD_KEYS)])
        new = random_vectors(len(AWKWARD_KEYS), DIM, seed=22)
        assert s.update_vectors(AWKWARD_KEYS, new) == len(AWKWARD_KEYS)
        res = s.search(new[:4], k=5, exclude=AWKWARD_KEYS[1:])
        assert all(not set(row) & set(AWKWARD_KEYS[1:]) for row in res.ids)
        assert res.ids[0][0] == AWKWARD_KEYS[0]
    after = milvus.vectors(collection_name)
    assert np.array_equal(np.stack([after[i] for i in AWKWARD_KEYS]), new)
    assert milvus.count(collection_name) == len(ids)


def test_pymilvus_query_iterator_loses_records_on_such_keys(milvus, collection_name, cleanup):
    """Why iter_vectors pages by itself: pymilvus 3.0.2's query_iterator pastes the VARCHAR cursor
    unescaped into the next expression (``pk > "x\\u00ff"``). Milvus Lite's parser rejects the
    escape; a Milvus server reads it as "xÿ" and silently skips every key in between. If this test
    starts failing, pymilvus fixed it."""
    cleanup.append(collection_name)
    ids = ["x\\u00ff", "xa", "xz", "xÿ", "y"]
    vecs = random_vectors(len(ids), DIM, seed=23)
    simple_collection(milvus, collection_name, ids, vecs)
    milvus.client.insert(collection_name, rows_of(ids, vecs))
    it = milvus.client.query_iterator(collection_name, batch_size=1, output_fields=["pk"], consistency_level="Strong")
    read: list[str] = []
    try:
        while rows := it.next():
            read += [r["pk"] for r in rows]
    except pymilvus.MilvusException:
        read.append("<parse error>")
    finally:
        it.close()
    assert read != ids, "pymilvus' query_iterator now pages VARCHAR keys correctly"
    with open_milvus(milvus, collection_name) as s:
        assert [i for batch, _ in s.iter_vectors(batch_size=1) for i in batch] == ids


# -- vector field and index ----------------------------------------------------------------------------


def test_single_vector_field_is_detected(milvus, plain):
    with open_milvus(milvus, plain, vector=None) as s:
        info = s.describe()
    assert info.vector_name == "vector" and info.dimension == DIM and info.id_type == "int"


def test_two_vector_fields_need_the_vector_option(milvus, collection_name, cleanup):
    needs(milvus, modern=True)
    cleanup.append(collection_name)
    ids = milvus.make_ids(30)
    milvus.create(collection_name, ids, random_vectors(30, DIM), metric="dot", rich=True)
    with open_milvus(milvus, collection_name, vector=None) as s:
        with pytest.raises(UnsupportedCollection, match=r"2 FLOAT_VECTOR fields \(vector, aux\).*vector=NAME"):
            s.describe()
    with open_milvus(milvus, collection_name, vector="aux") as s:
        info = s.describe()
        assert (info.vector_name, info.dimension, info.metric) == ("aux", 3, "l2")
        assert info.details["other_vector_fields"] == ["vector"]
    with open_milvus(milvus, collection_name, vector="nope") as s:
        with pytest.raises(UnsupportedCollection, match=r"no vector field 'nope'.*vector \(FLOAT_VECTOR\), aux"):
            s.describe()


def test_sparse_vector_field_is_not_a_target(milvus, collection_name, cleanup):
    needs(milvus, modern=True)
    cleanup.append(collection_name)
    client = milvus.client
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    params = client.prepare_index_params()
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(collection_name, schema=schema, index_params=params)
    with open_milvus(milvus, collection_name, vector=None) as s:
        with pytest.raises(UnsupportedCollection, match=r"no FLOAT_VECTOR field.*sparse \(SPARSE_FLOAT_VECTOR\)"):
            s.describe()
    with open_milvus(milvus, collection_name, vector="sparse") as s:
        with pytest.raises(UnsupportedCollection, match="is a SPARSE_FLOAT_VECTOR"):
            s.describe()


def test_vector_field_without_index_is_refused(milvus, collection_name, cleanup):
    cleanup.append(collection_name)
    simple_collection(milvus, collection_name, [1], random_vectors(1, DIM), index=False)
    with open_milvus(milvus, collection_name) as s:
        with pytest.raises(UnsupportedCollection, match="'vector' has no index"):
            s.describe()


# -- write paths -----------------------------------------------------------------------------------------


def test_default_write_path_follows_the_server_version(milvus, plain):
    with open_milvus(milvus, plain) as s:
        info = s.describe()
    assert info.server_version == milvus.version
    expected = "rows" if milvus.version.startswith("v2.3") else "partial_update"
    assert info.details["write_path"] == expected


def _write_paths(harness: MilvusHarness) -> list[str]:
    """The write paths the engine honours: Milvus 2.3.5 ignores partial_update
    (test_partial_update_is_ignored_by_milvus_2_3)."""
    return ["rows"] if harness.version.startswith("v2.3") else ["partial_update", "rows"]


def test_each_write_path_keeps_every_other_field(milvus, collection_name, cleanup):
    """Each write path updates its own third of one collection; every other field stays as it was."""
    cleanup.append(collection_name)
    ids = milvus.make_ids(120, "str")
    milvus.create(collection_name, ids, random_vectors(120, DIM, seed=31), metric="cosine", rich=True)
    snap, count = milvus.snapshot(collection_name), milvus.count(collection_name)
    before = milvus.vectors(collection_name)
    written: dict = {}
    for k, path in enumerate(_write_paths(milvus)):
        target = ids[k::3]
        new = random_vectors(len(target), DIM, seed=32 + k)
        with open_milvus(milvus, collection_name, write_path=path) as s:
            assert s.describe().details["write_path"] == path
            assert s.update_vectors(target, new) == len(target)
        written.update(zip(target, new))
        after = milvus.vectors(collection_name)
        assert all(np.array_equal(after[i], v) for i, v in written.items()), path
        assert all(np.array_equal(after[i], before[i]) for i in set(ids) - set(written)), path
        assert milvus.snapshot(collection_name) == snap, path
        assert milvus.count(collection_name) == count


def test_partial_update_is_ignored_by_milvus_2_3(milvus, collection_name, cleanup):
    """The trap the version check avoids: Milvus 2.3.5 takes ``partial_update=True`` as a plain upsert
    and wipes the dynamic fields of a pk + vector collection; our update on the same data keeps them."""
    if not milvus.version.startswith("v2.3"):
        pytest.skip(f"{milvus.name} honours partial_update")
    cleanup.append(collection_name)
    ids = milvus.make_ids(4)
    vecs = random_vectors(4, DIM, seed=33)
    simple_collection(milvus, collection_name, ids, vecs)
    milvus.client.insert(collection_name, rows_of(ids, vecs, label=lambda j: f"keep {j}"))
    milvus.client.upsert(collection_name, [{"pk": ids[0], "vector": vecs[0].tolist()}], partial_update=True)
    (row,) = milvus.client.query(collection_name, filter=f"pk == {ids[0]}", output_fields=["*"],
                                 consistency_level="Strong")
    assert "label" not in row, "Milvus 2.3.5 now honours partial_update: revisit PARTIAL_UPDATE_SINCE"
    with open_milvus(milvus, collection_name) as s:
        s.update_vectors(ids[1:], vecs[1:] * 2)
    rows = milvus.client.query(collection_name, filter=f"pk in {ids[1:]}", output_fields=["*"],
                               consistency_level="Strong")
    assert sorted(r["label"] for r in rows) == ["keep 1", "keep 2", "keep 3"]


def test_updated_records_stay_in_their_partition(milvus, collection_name, cleanup):
    """Each write path rewrites records of both partitions (20-39, then the same again); every
    record stays where it was."""
    cleanup.append(collection_name)
    ids = milvus.make_ids(60)
    vecs = random_vectors(60, DIM, seed=34)
    simple_collection(milvus, collection_name, ids, vecs, partitions=("hot",))
    milvus.client.insert(collection_name, rows_of(ids[:30], vecs[:30], tag=lambda j: "default"))
    milvus.client.insert(collection_name, rows_of(ids[30:], vecs[30:], tag=lambda j: "hot"), partition_name="hot")
    target = ids[20:40]  # both partitions
    for k, path in enumerate(_write_paths(milvus), start=1):
        with open_milvus(milvus, collection_name, write_path=path) as s:
            assert s.update_vectors(target, vecs[20:40] + k) == 20
        hot = milvus.client.query(collection_name, filter="", output_fields=["pk", "tag", "vector"], limit=100,
                                  partition_names=["hot"], consistency_level="Strong")
        assert sorted(r["pk"] for r in hot) == sorted(ids[30:]), path
        assert {r["tag"] for r in hot} == {"hot"}, path
        after = milvus.vectors(collection_name)
        assert all(np.array_equal(after[i], v) for i, v in zip(target, vecs[20:40] + k)), path
        assert milvus.count(collection_name) == 60, path


def test_rows_path_refuses_fields_it_cannot_carry(milvus, collection_name, cleanup, monkeypatch):
    """Float16 / binary / geometry ... values do not survive a pymilvus read + upsert: the rows path
    refuses such collections instead of rewriting them (Milvus Lite lacks those types, so the check is
    driven through the field list)."""
    cleanup.append(collection_name)
    ids = milvus.make_ids(5)
    simple_collection(milvus, collection_name, ids, random_vectors(5, DIM))
    milvus.client.insert(collection_name, rows_of(ids, random_vectors(5, DIM)))
    with open_milvus(milvus, collection_name, write_path="rows") as s:
        s.layout().fields.append({"name": "half", "type": DataType.FLOAT16_VECTOR})
        with pytest.raises(UnsupportedCollection, match=r"cannot carry back \['half \(FLOAT16_VECTOR\)'\]"):
            s.update_vectors(ids[:1], random_vectors(1, DIM))
    assert milvus.count(collection_name) == 5


def test_read_back_catches_a_write_that_did_not_land(milvus, collection_name, cleanup, monkeypatch):
    """The upsert "succeeds" but stores something else (here: another vector, then another field
    value): the read-back raises WriteFailed instead of reporting success."""
    from connectors import WriteFailed

    cleanup.append(collection_name)
    ids = milvus.make_ids(20)
    vecs = random_vectors(20, DIM, seed=35)
    simple_collection(milvus, collection_name, ids, vecs)
    milvus.client.insert(collection_name, rows_of(ids, vecs, label=lambda j: f"l{j}"))
    real_upsert = MilvusStore._upsert

    def vector_goes_wrong(self, rows, partition, *, partial):
        rows = [{**r, "vector": [0.5] * DIM} for r in rows]
        return real_upsert(self, rows, partition, partial=partial)

    def label_goes_wrong(self, rows, partition, *, partial):
        return real_upsert(self, [{**r, "label": "changed"} for r in rows], partition, partial=partial)

    paths = ["rows"] if milvus.version.startswith("v2.3") else ["partial_update", "rows"]
    for path in paths:
        with open_milvus(milvus, collection_name, write_path=path) as s:
            monkeypatch.setattr(MilvusStore, "_upsert", vector_goes_wrong)
            with pytest.raises(WriteFailed, match="do not hold the written vector"):
                s.update_vectors(ids[:3], vecs[:3] * 2)
            if path == "rows":
                monkeypatch.setattr(MilvusStore, "_upsert", label_goes_wrong)
                with pytest.raises(WriteFailed, match="other fields changed"):
                    s.update_vectors(ids[3:6], vecs[3:6] * 2)
            monkeypatch.setattr(MilvusStore, "_upsert", real_upsert)


def test_released_collection_is_loaded_on_open(milvus, collection_name, cleanup):
    cleanup.append(collection_name)
    ids = milvus.make_ids(10)
    milvus.create(collection_name, ids, random_vectors(10, DIM), rich=False)
    milvus.client.release_collection(collection_name)
    with open_milvus(milvus, collection_name) as s:
        assert s.describe().count == 10
        assert sorted(i for b, _ in s.iter_vectors() for i in b) == sorted(ids)


# -- search ----------------------------------------------------------------------------------------------


def test_exclusion_with_many_ids_matches_brute_force(milvus, collection_name, cleanup, monkeypatch):
    """More excluded ids than one filter expression takes, on one collection, at the default filter
    limit and at 50: the two ways the over-fetch filters (the excluded ids met near the queries
    left short; all of them once more than a filter's worth were met)."""
    cleanup.append(collection_name)
    n = 6000
    ids = milvus.make_ids(n)
    vecs = random_vectors(n, 8, seed=41)
    milvus.create(collection_name, ids, vecs, metric="dot", rich=False)
    queries = vecs[:12] + 0.05
    sims = queries.astype(np.float64) @ vecs.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")
    rng = np.random.default_rng(42)
    excluded_pos = set(rng.choice(n, size=4500, replace=False).tolist()) | set(order[:, :40].ravel().tolist())
    exclude = [ids[j] for j in sorted(excluded_pos)] + ["wrong-type-id"]
    for filter_ids in (milvus_search._FILTER_IDS, 50):
        monkeypatch.setattr(milvus_search, "_FILTER_IDS", filter_ids)
        assert len(exclude) > milvus_search._FILTER_IDS
        with open_milvus(milvus, collection_name) as s:
            res = s.search(queries, k=10, exclude=exclude)
        for qi in range(len(queries)):
            truth = [ids[j] for j in order[qi] if j not in excluded_pos][:10]
            assert res.ids[qi] == truth, filter_ids
            np.testing.assert_allclose(res.scores[qi], sims[qi, [ids.index(i) for i in truth]], rtol=1e-5, atol=1e-5)


def test_search_k_beyond_the_milvus_window_is_refused(milvus, plain):
    with open_milvus(milvus, plain) as s:
        with pytest.raises(InvalidVectors, match="16,384"):
            s.search(random_vectors(1, DIM), k=20_000)


# -- consistency -----------------------------------------------------------------------------------------


def test_reads_see_writes_made_just_before(milvus, collection_name, cleanup):
    """The collection uses Milvus' default consistency (Bounded); the connector reads Strong, so
    records the application inserted a moment ago exist for it, and its own writes read back."""
    cleanup.append(collection_name)
    ids = milvus.make_ids(300)
    vecs = random_vectors(300, DIM, seed=51)
    simple_collection(milvus, collection_name, ids[:1], vecs, consistency="Bounded")
    with open_milvus(milvus, collection_name) as s:
        s.describe()
        for part in range(0, 300, 100):  # insert, then immediately update / read through the store
            milvus.client.insert(collection_name, rows_of(ids[part:part + 100], vecs[part:part + 100]))
            assert s.update_vectors(ids[part:part + 100], vecs[part:part + 100] * 3) == 100
            assert s.describe().count == part + 100
        _, got, missing = s.get_vectors(ids)
        assert not missing and np.array_equal(got, vecs * 3)


# -- connections and credentials ---------------------------------------------------------------------------


def test_wrong_and_missing_tokens(milvus, monkeypatch, plain):
    needs(milvus, auth=True)
    base = milvus.store_base + f"?collection={plain}"
    monkeypatch.delenv("MILVUS_TOKEN", raising=False)
    with pytest.raises(AuthenticationFailed, match="needs a token: set MILVUS_TOKEN"):
        MilvusStore(parse_uri(base))
    monkeypatch.setenv("MILVUS_TOKEN", "root:wrong-secret-value")
    with pytest.raises(AuthenticationFailed, match="UNAUTHENTICATED") as err:
        MilvusStore(parse_uri(base))
    assert "wrong-secret-value" not in str(err.value)
    monkeypatch.setenv("MILVUS_TOKEN", milvus.token)  # the env var works like the secret file
    with MilvusStore(parse_uri(base)) as s:
        assert s.describe().count == 10


def test_unreachable_server_fails_fast(milvus):
    needs(milvus, server=True)
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed, match=r"cannot reach Milvus server 127\.0\.0\.1"):
        connectors.open_store(f"milvus+http://127.0.0.1:{closed_port()}?collection=docs&retry_budget=0")
    assert time.monotonic() - t0 < 10


def test_unknown_database_is_reported(milvus):
    with pytest.raises(CollectionNotFound, match="database 'no_such_db'"):
        with connectors.open_store(milvus.uri("docs") + "&db_name=no_such_db") as s:
            s.describe()


@pytest.fixture
def lite_selected() -> None:
    if "milvus-lite" not in MILVUS:
        pytest.skip("milvus-lite is not among the selected harnesses")


def test_milvus_lite_paths(tmp_path, lite_selected):
    missing = tmp_path / "missing.db"
    with pytest.raises(CollectionNotFound, match="no Milvus Lite database"):
        connectors.open_store(f"milvus://{missing}?collection=docs")
    assert not missing.exists()
    with pytest.raises(InvalidURI, match=r"ending in \.db"):
        connectors.open_store(f"milvus://{tmp_path / 'dir'}?collection=docs")
    with pytest.raises(InvalidURI, match="no in-memory mode"):
        connectors.open_store("milvus::memory:?collection=docs")
    with pytest.raises(InvalidURI, match="not a valid Milvus name"):
        connectors.open_store(f"milvus://{missing}?collection=has-dash")


# -- query log and state -------------------------------------------------------------------------------------


def test_query_log_written_with_the_native_client(milvus, collection_name, cleanup):
    """Dynamic fields (our own format), explicit scalar fields, and a JSON field ``fields`` all read."""
    cleanup.extend([f"{collection_name}_dyn", f"{collection_name}_typed", f"{collection_name}_json"])
    client = milvus.client
    qv = random_vectors(3, DIM, seed=61)
    for suffix, extra_fields in (("dyn", {}), ("typed", {"timestamp": DataType.DOUBLE, "split": DataType.VARCHAR}),
                                 ("json", {"fields": DataType.JSON})):
        name = f"{collection_name}_{suffix}"
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("query_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
        for f, t in extra_fields.items():
            schema.add_field(f, t, **({"max_length": 16} if t == DataType.VARCHAR else {}))
        params = client.prepare_index_params()
        params.add_index("embedding", index_type="FLAT", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        entries = [{"relevant_ids": [4, "doc-9"], "timestamp": 1_700_000_000.25, "split": "val"},
                   {"relevant_ids": [7], "grades": [2.0], "timestamp": 1_700_000_001.0, "split": "train"},
                   {"relevant_ids": ["doc-1"], "timestamp": 1_700_000_005.0, "split": "test"}]
        rows = [({"fields": e} if suffix == "json" else e) | {"query_id": f"q{j}", "embedding": qv[j].tolist()}
                for j, e in enumerate(entries)]
        client.insert(name, rows)
        with open_milvus(milvus, name, vector=None) as s:
            got = {q.query_id: q for q in s.read_log(name)}
        assert sorted(got) == ["q0", "q1", "q2"]
        assert got["q0"].relevant_ids == [4, "doc-9"] and got["q0"].split == "val"
        assert got["q1"].grades == [2.0] and got["q1"].timestamp == 1_700_000_001.0
        assert np.array_equal(got["q2"].vector, qv[2])
        # the entry rule holds for rows written natively: a millisecond timestamp is refused, by name
        bad = {"relevant_ids": [7], "timestamp": 1_700_000_005_000, "split": "test"}
        client.upsert(name, [({"fields": bad} if suffix == "json" else bad) | {"query_id": "q2",
                                                                                "embedding": qv[2].tolist()}])
        with open_milvus(milvus, name, vector=None) as s, \
                pytest.raises(UnsupportedCollection, match="'q2'.*looks like milliseconds"):
            list(s.read_log(name))


def test_query_log_format_we_write(milvus, plain, collection_name, cleanup):
    name = f"{collection_name}_log"
    cleanup.append(name)
    entry = LabelledQuery("q-1", random_vectors(1, DIM)[0], [1, "x"], grades=None, timestamp=1_700_000_012.5,
                          split=None)
    with open_milvus(milvus, plain) as s:
        s.append_log(name, [entry])
    (row,) = milvus.client.query(name, filter="", output_fields=["*"], limit=10, consistency_level="Strong")
    assert row["query_id"] == "q-1" and row["relevant_ids"] == [1, "x"] and row["timestamp"] == 1_700_000_012.5
    assert "grades" not in row and "split" not in row  # absent fields are not written
    desc = milvus.client.describe_collection(name)
    assert desc["enable_dynamic_field"] and {f["name"] for f in desc["fields"]} == {"query_id", "vector"}


def test_state_meta_size_is_checked_before_writing(milvus, plain, collection_name):
    with open_milvus(milvus, plain) as s:
        state = s.state(f"{collection_name}_state")
        try:
            state.create(DIM)
            with pytest.raises(InvalidVectors, match="at most 65535"):
                state.put("run", [StateRecord("ok", None, {}), StateRecord("big", None, {"x": "é" * 40_000})])
            assert list(state.scan("run")) == []  # nothing of the batch was written
            weird = ['k"1', "k\\2", "k'3"]
            state.put("original", [StateRecord(k, random_vectors(1, DIM)[0], {"k": k}) for k in weird])
            assert sorted(r.key for r in state.get("original", weird)) == sorted(weird)
            state.delete("original", weird[:2])
            assert [r.key for b in state.scan("original") for r in b] == weird[2:]
        finally:
            state.drop()


# -- loader ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("id_type", ["int", "str"])
def test_create_collection_loader(milvus, collection_name, cleanup, id_type):
    cleanup.append(collection_name)
    ids = milvus.make_ids(50, id_type)
    vecs = random_vectors(50, DIM, seed=71)
    payloads = [{"n": j, "title": f"t{j}", "ok": j % 2 == 0, "x": j / 4} for j in range(50)]
    docs = [f"doc {j}" if j % 5 else None for j in range(50)]
    connectors.create_collection(milvus.uri(collection_name), ids, vecs, metric="cosine", payloads=payloads,
                                 documents=docs)
    rows = {r["id"]: r for r in milvus.client.query(collection_name, filter="", output_fields=["*"], limit=100,
                                                    consistency_level="Strong")}
    assert sorted(rows, key=str) == sorted(ids, key=str)
    assert rows[ids[3]]["title"] == "t3" and rows[ids[3]]["x"] == 0.75 and rows[ids[5]]["document"] == ""
    with connectors.open_store(milvus.uri(collection_name)) as s:
        info = s.describe()
        assert (info.metric, info.id_type, info.count) == ("cosine", id_type, 50)
    with pytest.raises(UnsupportedCollection, match="already exists"):
        connectors.create_collection(milvus.uri(collection_name), ids, vecs, metric="cosine")


def test_loader_creates_a_milvus_lite_database(tmp_path, lite_selected):
    path = tmp_path / "sub" / "new.db"
    connectors.create_collection(f"milvus://{path}?collection=docs", [1, 2], random_vectors(2, 4), metric="l2")
    with connectors.open_store(f"milvus://{path}?collection=docs") as s:
        assert s.describe().count == 2


def test_error_chains_that_cycle_are_walked_once():
    """A server killed mid-call left pymilvus exceptions whose cause chain leads back to itself;
    reading the gRPC status out of one looped forever (a run hung on a dead Milvus Lite server)."""
    import grpc

    class Unavailable(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection refused"

    outer, middle, rpc = pymilvus.exceptions.MilvusException(message="outer"), RuntimeError("middle"), Unavailable()
    outer.__cause__, middle.__cause__ = middle, outer  # a cycle without an RpcError in it
    assert milvus_client_module._details(outer) == "" and milvus_client_module._status_code(outer) is None
    middle.__cause__, rpc.__cause__ = rpc, outer  # the RpcError sits inside the cycle
    assert milvus_client_module._status_code(outer) is grpc.StatusCode.UNAVAILABLE
    assert milvus_client_module._details(outer) == "connection refused"
