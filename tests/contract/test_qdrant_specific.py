"""Qdrant behaviour beyond the generic contract: named vectors, UUID ids, ids Qdrant cannot hold,
the write path (update_vectors only, read back), cosine normalisation, local-mode sharing, locking
and durability, ``:memory:`` mode, and the server code path (unreachable servers, API keys).

Database behaviour is always the real engine (qdrant-client local mode). No Qdrant server can run
here (DESIGN.md section 4), so the server path is exercised against closed ports and, for the API
key, against a loopback HTTP listener that only records the request headers and refuses them the
way Qdrant does (401/403): it checks what we send and how we translate the answer, not a database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

qdrant_client = pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.http.exceptions import UnexpectedResponse  # noqa: E402

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
    WriteFailed,
)
from connectors import qdrant as qdrant_connector  # noqa: E402
from connectors.qdrant import client as qdrant_client_module, layout as qdrant_layout  # noqa: E402
from connectors._uri import parse_uri  # noqa: E402
from tests._procs import closed_port, loopback_http  # noqa: E402
from tests.backends import random_vectors  # noqa: E402
from tests.backends.qdrant import QdrantHarness, rich_payload  # noqa: E402
from tests.conftest import selected_harnesses  # noqa: E402

DIM = 16


@pytest.fixture
def qh(request) -> QdrantHarness:
    if "qdrant-local" not in selected_harnesses():
        pytest.skip("qdrant-local is not among the selected harnesses")
    return request.getfixturevalue("harness_qdrant_local")


def uri(h: QdrantHarness, name: str, **options: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"qdrant://{h.path}?collection={name}{extra}"


def create_named(h: QdrantHarness, name: str, n: int, spaces: dict[str, tuple[int, models.Distance]],
                 ids: list | None = None) -> tuple[list, dict[str, np.ndarray]]:
    """A collection with the given named vectors (name -> (dim, distance)) and rich payloads."""
    ids = ids or h.make_ids(n)
    h.client.create_collection(name, vectors_config={k: models.VectorParams(size=d, distance=dist)
                                                     for k, (d, dist) in spaces.items()})
    vecs = {k: random_vectors(n, d, seed=30 + j) for j, (k, (d, _)) in enumerate(spaces.items())}
    h.client.upsert(name, points=models.Batch(ids=ids, vectors={k: v.tolist() for k, v in vecs.items()},
                                              payloads=[rich_payload(i) for i in range(n)]), wait=True)
    return ids, vecs


def stored(h: QdrantHarness, name: str) -> dict:
    """Every point as the native client returns it: {id: (payload, {vector name: float32 bytes})}."""
    points, _ = h.client.scroll(name, limit=100_000, with_payload=True, with_vectors=True)
    out = {}
    for p in points:
        named = p.vector if isinstance(p.vector, dict) else {"": p.vector}
        out[p.id] = (json.dumps(p.payload, sort_keys=True),
                     {k: np.asarray(v, np.float32).tobytes() for k, v in named.items()})
    return out


# -- named vectors ------------------------------------------------------------------------------------


def test_updating_one_named_vector_leaves_the_others_byte_identical(qh, collection_name):
    spaces = {"text": (DIM, models.Distance.DOT), "aux": (3, models.Distance.COSINE),
              "img": (8, models.Distance.EUCLID)}
    ids, _ = create_named(qh, collection_name, 120, spaces)
    try:
        before = stored(qh, collection_name)
        new_text = random_vectors(40, DIM, seed=40)
        with connectors.open_store(uri(qh, collection_name, vector="text")) as s:
            info = s.describe()
            assert (info.vector_name, info.dimension, info.metric) == ("text", DIM, "dot")
            assert s.update_vectors(ids[:40], new_text) == 40
        mid = stored(qh, collection_name)
        for j, i in enumerate(ids):
            assert mid[i][0] == before[i][0], f"payload of {i} changed"
            assert mid[i][1]["aux"] == before[i][1]["aux"] and mid[i][1]["img"] == before[i][1]["img"]
            want = new_text[j].tobytes() if j < 40 else before[i][1]["text"]
            assert mid[i][1]["text"] == want
        new_img = random_vectors(10, 8, seed=41)
        with connectors.open_store(uri(qh, collection_name, vector="img")) as s:
            assert s.describe().metric == "l2"
            s.update_vectors(ids[50:60], new_img)
        after = stored(qh, collection_name)
        for j, i in enumerate(ids):
            assert after[i][1]["text"] == mid[i][1]["text"] and after[i][1]["aux"] == mid[i][1]["aux"]
            assert after[i][1]["img"] == (new_img[j - 50].tobytes() if 50 <= j < 60 else mid[i][1]["img"])
        assert qh.count(collection_name) == 120
    finally:
        qh.drop(collection_name)


def test_a_single_named_vector_is_detected(qh, collection_name):
    ids, vecs = create_named(qh, collection_name, 30, {"emb": (DIM, models.Distance.DOT)})
    try:
        with connectors.open_store(uri(qh, collection_name)) as s:
            assert s.describe().vector_name == "emb"
            found, got, _ = s.get_vectors(ids[:3])
            assert np.array_equal(got, vecs["emb"][:3])
            s.update_vectors(ids[:2], vecs["emb"][:2] * 3)
        points = qh.client.retrieve(collection_name, ids=ids[:2], with_vectors=True)
        got = {p.id: np.asarray(p.vector["emb"], np.float32) for p in points}
        assert np.array_equal(np.stack([got[i] for i in ids[:2]]), vecs["emb"][:2] * 3)
    finally:
        qh.drop(collection_name)


def test_ambiguous_named_vectors_are_refused_listing_the_names(qh, collection_name):
    ids, _ = create_named(qh, collection_name, 20, {"title": (DIM, models.Distance.DOT),
                                                     "body": (DIM, models.Distance.COSINE)})
    try:
        before = stored(qh, collection_name)
        with connectors.open_store(uri(qh, collection_name)) as s:
            for call in (s.describe, lambda: list(s.iter_vectors()),
                         lambda: s.update_vectors(ids[:2], random_vectors(2, DIM)),
                         lambda: s.search(random_vectors(1, DIM), k=3)):
                with pytest.raises(UnsupportedCollection) as err:
                    call()
                msg = str(err.value)
                assert "'body'" in msg and "'title'" in msg and "vector=" in msg and collection_name in msg
        with connectors.open_store(uri(qh, collection_name, vector="nope")) as s:
            with pytest.raises(UnsupportedCollection, match=r"no vector named 'nope'.*\['body', 'title'\]"):
                s.describe()
        assert stored(qh, collection_name) == before
    finally:
        qh.drop(collection_name)


def test_vector_option_on_an_unnamed_collection_is_refused(qh, collection_name):
    qh.create(collection_name, qh.make_ids(5), random_vectors(5, DIM), metric="dot", rich=False)
    try:
        with connectors.open_store(uri(qh, collection_name, vector="text")) as s:
            with pytest.raises(UnsupportedCollection, match="single unnamed vector"):
                s.describe()
    finally:
        qh.drop(collection_name)


def test_quantised_vector_storage_is_refused(qh, collection_name):
    qh.client.create_collection(collection_name, vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.DOT, datatype=models.Datatype.UINT8))
    try:
        with connectors.open_store(uri(qh, collection_name)) as s:
            with pytest.raises(UnsupportedCollection, match="uint8"):
                s.describe()
    finally:
        qh.drop(collection_name)


# -- ids ----------------------------------------------------------------------------------------------


def test_uuid_ids_match_in_any_spelling(qh, collection_name):
    ids = qh.make_ids(50, "uuid")
    vecs = random_vectors(50, DIM, seed=50)
    qh.create(collection_name, ids, vecs, metric="dot", rich=True)
    try:
        upper = ids[3].upper()
        bare = ids[4].replace("-", "")
        braced = "{" + ids[5] + "}"
        with connectors.open_store(qh.uri(collection_name)) as s:
            assert s.describe().id_type == "uuid"
            found, got, missing = s.get_vectors([upper, bare, braced, str(uuid.uuid4())])
            assert found == [upper, bare, braced] and len(missing) == 1
            assert np.array_equal(got, vecs[3:6])
            assert s.update_vectors([upper], vecs[:1]) == 1
            read = {i for batch, _ in s.iter_vectors(batch_size=7) for i in batch}
            assert read == set(ids), "iter_vectors returns canonical lowercase UUIDs"
            res = s.search(vecs[6:7], k=3, exclude=[ids[6].upper()])
            assert ids[6] not in res.ids[0] and all(i in set(ids) for i in res.ids[0])
            with pytest.raises(InvalidVectors, match="duplicate"):
                s.update_vectors([ids[7], ids[7].upper()], vecs[:2])
        assert np.array_equal(qh.vectors(collection_name)[ids[3]], vecs[0])
    finally:
        qh.drop(collection_name)


@pytest.mark.parametrize("bad", ["doc-1", "", -1, 2**64], ids=["str", "empty", "negative", "too-big"])
def test_ids_qdrant_cannot_hold_are_refused_up_front(qh, small_int, bad):
    name, ids = small_int
    before = stored(qh, name)
    with connectors.open_store(qh.uri(name)) as s:
        with pytest.raises(InvalidVectors, match="unsigned 64-bit ints or UUIDs") as err:
            s.update_vectors([ids[0], bad], random_vectors(2, DIM))
        assert repr(bad) in str(err.value) and name in str(err.value)
        found, _, missing = s.get_vectors([ids[0], bad])
        assert found == [ids[0]] and missing == [bad]
        assert s.search(random_vectors(1, DIM), k=2, exclude=[bad]).ids[0]
    assert stored(qh, name) == before


def test_the_loader_refuses_ids_qdrant_cannot_hold(tmp_path):
    with pytest.raises(InvalidVectors, match="'doc-1'"):
        connectors.create_collection(f"qdrant://{tmp_path}/db?collection=c", ["doc-1"], random_vectors(1, 4))
    assert not (tmp_path / "db").exists(), "nothing is created for refused input"


@pytest.fixture
def small_int(qh, collection_name):
    ids = qh.make_ids(30)
    qh.create(collection_name, ids, random_vectors(30, DIM, seed=60), metric="dot", rich=True)
    yield collection_name, ids
    qh.drop(collection_name)


# -- write path ---------------------------------------------------------------------------------------


def test_writes_use_update_vectors_only_and_wait(qh, small_int, monkeypatch):
    name, ids = small_int
    calls: list[tuple[str, dict]] = []
    with connectors.open_store(qh.uri(name)) as s:
        client = s.conn.client
        real_update = client.update_vectors

        def update_vectors(*args, **kwargs):
            calls.append(("update_vectors", kwargs))
            return real_update(*args, **kwargs)

        def forbidden(*args, **kwargs):
            raise AssertionError("a user collection was written with upsert/overwrite")

        monkeypatch.setattr(client, "update_vectors", update_vectors)
        for method in ("upsert", "upload_points", "upload_collection", "overwrite_payload", "set_payload",
                       "delete_vectors", "delete"):
            monkeypatch.setattr(client, method, forbidden)
        assert s.update_vectors(ids[:5], random_vectors(5, DIM, seed=61)) == 5
    assert calls and all(kw.get("wait") is True for _, kw in calls)


def test_a_point_deleted_between_check_and_write_is_reported(qh, small_int, monkeypatch):
    name, ids = small_int
    with connectors.open_store(qh.uri(name)) as s:
        client = s.conn.client
        real_update = client.update_vectors

        def delete_then_update(collection_name, points, **kwargs):
            client.delete(collection_name, points_selector=models.PointIdsList(points=[ids[2]]), wait=True)
            return real_update(collection_name, points=points, **kwargs)

        monkeypatch.setattr(client, "update_vectors", delete_then_update)
        with pytest.raises(WriteFailed, match=rf"point {ids[2]!r} does not exist"):
            s.update_vectors(ids[:4], random_vectors(4, DIM, seed=62))


def test_cosine_collections_read_back_normalised_within_tolerance(qh, collection_name):
    ids = qh.make_ids(40)
    qh.create(collection_name, ids, random_vectors(40, DIM, seed=63) * 5, metric="cosine", rich=False)
    try:
        new = random_vectors(40, DIM, seed=64) * 7
        with connectors.open_store(qh.uri(collection_name)) as s:
            assert "normalised" in s.describe().details["vectors_round_trip"]
            assert s.update_vectors(ids, new) == 40
            _, got, _ = s.get_vectors(ids)
            # what Qdrant hands back is the unit vector; writing it back must pass the check too
            assert s.update_vectors(ids, got) == 40
        stored_vecs = np.stack([qh.vectors(collection_name)[i] for i in ids])
        unit = new / np.linalg.norm(new, axis=1, keepdims=True)
        assert np.abs(stored_vecs - unit).max() <= 1e-6
        assert np.allclose(np.linalg.norm(stored_vecs, axis=1), 1, atol=1e-6)
    finally:
        qh.drop(collection_name)


def test_local_exclusion_search_is_exact_for_large_exclusions(qh, collection_name):
    n = 500
    ids = qh.make_ids(n)
    vecs = random_vectors(n, DIM, seed=65)
    qh.create(collection_name, ids, vecs, metric="l2", rich=False)
    try:
        queries = random_vectors(6, DIM, seed=66)
        exclude = set(ids[::2]) | set(ids[:100])
        with connectors.open_store(qh.uri(collection_name)) as s:
            assert s.describe().details["exclusion_search"].startswith("over-fetch")
            res = s.search(queries, k=12, exclude=exclude)
        keep = [j for j, i in enumerate(ids) if i not in exclude]
        d2 = ((queries[:, None, :].astype(np.float64) - vecs[None, keep, :]) ** 2).sum(-1)
        for qi in range(len(queries)):
            order = np.argsort(d2[qi], kind="stable")[:12]
            assert res.ids[qi] == [ids[keep[j]] for j in order]
            np.testing.assert_allclose(res.scores[qi], -d2[qi, order], rtol=1e-4)
    finally:
        qh.drop(collection_name)


# -- local mode: sharing, durability, locking, memory ---------------------------------------------------


def test_writes_reach_the_disk(tmp_path):
    """Reopen the directory from a brand-new client once every in-process reference is released."""
    path = tmp_path / "db"  # a real disk, not the harness's tmpfs directory
    ids = list(range(1, 21))
    vecs = random_vectors(20, DIM, seed=70)
    with qdrant_connector.local_client(str(path)) as c:
        c.create_collection("docs", vectors_config={"text": models.VectorParams(size=DIM, distance=models.Distance.DOT)})
        c.upsert("docs", points=models.Batch(ids=ids, vectors={"text": vecs.tolist()},
                                             payloads=[{"i": i} for i in ids]), wait=True)
    new = random_vectors(5, DIM, seed=71)
    with connectors.open_store(f"qdrant://{path}?collection=docs") as s:
        s.update_vectors(ids[:5], new)
    assert str(path) not in qdrant_client_module._LOCAL, "the last release closes the directory's client"
    fresh = QdrantClient(path=str(path))
    try:
        points = {p.id: p for p in fresh.retrieve("docs", ids=ids, with_payload=True, with_vectors=True)}
        for j, i in enumerate(ids):
            want = new[j] if j < 5 else vecs[j]
            assert np.asarray(points[i].vector["text"], np.float32).tobytes() == want.tobytes()
            assert points[i].payload == {"i": i}
    finally:
        fresh.close()


def test_a_directory_held_by_another_process_is_reported(tmp_path):
    path = tmp_path / "db"
    connectors.create_collection(f"qdrant://{path}?collection=docs", [1, 2], random_vectors(2, 4), metric="dot")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from qdrant_client import QdrantClient; "
         f"c = QdrantClient(path={str(path)!r}); print('ready', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ConnectionFailed, match="in use by another process"):
            connectors.open_store(f"qdrant://{path}?collection=docs")
    finally:
        holder.kill()  # the process this test started, by its handle
        holder.wait()
    with connectors.open_store(f"qdrant://{path}?collection=docs") as s:  # free again
        assert s.describe().count == 2


def test_a_missing_directory_is_reported_and_not_created(tmp_path):
    with pytest.raises(CollectionNotFound, match="no Qdrant local database"):
        connectors.open_store(f"qdrant://{tmp_path}/nothing?collection=docs")
    assert not (tmp_path / "nothing").exists()


def test_relative_paths_and_other_spellings_share_one_client(qh, small_int, monkeypatch):
    name, _ = small_int
    monkeypatch.chdir(qh.path.parent)
    with connectors.open_store(f"qdrant:{qh.path.name}?collection={name}&vector=text") as s:
        assert s.conn.client is qh.client
        assert s.describe().count == 30
    with connectors.open_store(f"qdrant://{qh.path}/./?collection={name}&vector=text") as s:
        assert s.conn.client is qh.client


def test_memory_mode_is_shared_within_the_process():
    name = f"mem_{uuid.uuid4().hex[:8]}"
    ids = [10, 20, 30]
    vecs = random_vectors(3, DIM, seed=72)
    connectors.create_collection(f"qdrant::memory:?collection={name}", ids, vecs, metric="dot",
                                 payloads=[{"k": i} for i in ids], documents=["a", "b", "c"])
    with connectors.open_store(f"qdrant::memory:?collection={name}") as a:
        info = a.describe()
        assert info.count == 3 and info.details["mode"] == "memory"
        assert info.server_version.startswith("local")
        with connectors.open_store(f"qdrant::memory:?collection={name}") as b:
            b.update_vectors([20], vecs[:1])
        _, got, _ = a.get_vectors([20])
        assert np.array_equal(got[0], vecs[0])
    with connectors.open_store(f"qdrant::memory:?collection={name}") as c:  # outlives its stores
        assert c.describe().count == 3
        with pytest.raises(UnsupportedCollection, match="already exists"):
            connectors.create_collection(f"qdrant::memory:?collection={name}", [1], vecs[:1], metric="dot")
        with qdrant_connector.local_client("") as native:
            (p,) = native.retrieve(name, ids=[30], with_payload=True)
            assert p.payload == {"k": 30, "document": "c"}
            native.delete_collection(name)


def test_describe_reports_the_local_mode(qh, small_int):
    name, _ = small_int
    with connectors.open_store(qh.uri(name)) as s:
        info = s.describe()
    assert info.server_version.startswith("local (qdrant-client 1.")
    assert info.details["mode"] == "local" and info.details["distance"] == "Dot"
    assert info.details["vectors_round_trip"] == "bit-exact"


# -- query log and state formats ----------------------------------------------------------------------


def test_a_query_log_written_by_the_native_client_is_read(qh, small_int):
    name, ids = small_int
    log = f"{name}_log"
    qh.client.create_collection(log, vectors_config={"q": models.VectorParams(size=DIM, distance=models.Distance.COSINE)})
    qv = random_vectors(2, DIM, seed=73)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    qh.client.upsert(log, points=[
        models.PointStruct(id=str(uuid.uuid4()), vector={"q": qv[0].tolist()},
                           payload={"query_id": "q-1", "relevant_ids": [ids[0], ids[1]], "timestamp": 1.5e9}),
        models.PointStruct(id=7, vector={"q": qv[1].tolist()},
                           payload={"query_id": "q-2", "relevant_ids": ids[2], "grades": 2, "split": "val"}),
    ], wait=True)
    try:
        with connectors.open_store(qh.uri(name)) as s:
            got = {e.query_id: e for e in s.read_log(log)}
            assert got["q-1"].relevant_ids == [ids[0], ids[1]] and got["q-1"].timestamp == 1.5e9
            assert got["q-2"].relevant_ids == [ids[2]] and got["q-2"].grades == [2.0] and got["q-2"].split == "val"
            assert np.abs(got["q-1"].vector - qv[0]).max() <= 1e-6
            # appending to that log writes its named vector
            s.append_log(log, [LabelledQuery("q-3", qv[0], [ids[3]])])
        (p,) = qh.client.retrieve(log, ids=[qdrant_layout._log_point("q-3")], with_payload=True, with_vectors=True)
        assert set(p.vector) == {"q"} and p.payload["query_id"] == "q-3" and p.payload["relevant_ids"] == [ids[3]]
    finally:
        qh.drop(log)


def test_state_layout_and_kind_check(qh, small_int):
    name, _ = small_int
    with connectors.open_store(qh.uri(name)) as s:
        state = s.state(f"{name}_state")
        state.create(DIM)
        try:
            vec = random_vectors(1, DIM, seed=74)[0]
            state.put("original", [StateRecord("7", vec, {"fp": "ab"})])
            (p,) = qh.client.retrieve(state.name, ids=[str(uuid.uuid5(qdrant_client_module._NAMESPACE, "original:7"))],
                                      with_payload=True, with_vectors=True)
            assert p.payload == {"kind": "original", "key": "7", "meta": '{"fp": "ab"}', "has_vector": True}
            assert np.asarray(p.vector, np.float32).tobytes() == vec.tobytes()
            with pytest.raises(ValueError, match="without ':'"):
                state.put("a:b", [StateRecord("c", None, {})])
            with pytest.raises(InvalidVectors, match="JSON"):
                state.put("run", [StateRecord("r", None, {"x": float("nan")})])
            with pytest.raises(InvalidVectors, match="duplicate"):
                state.put("run", [StateRecord("r", None, {}), StateRecord("r", None, {})])
            with pytest.raises(UnsupportedCollection, match=f"{DIM}-d"):
                state.create(DIM + 1)
        finally:
            state.drop()
        with pytest.raises(CollectionNotFound):
            list(state.scan("original"))


# -- server code path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme, options", [("http", ""), ("https", ""), ("http", "&prefer_grpc=true")],
                         ids=["http", "https", "grpc"])
def test_an_unreachable_server_fails_fast_naming_it(scheme, options):
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
        with connectors.open_store(f"qdrant+{scheme}://127.0.0.1:{port}?collection=docs&timeout=3&retry_budget=0{options}") as s:
            s.describe()
    assert time.monotonic() - t0 < 30


class _Refusing(BaseHTTPRequestHandler):
    """Answers every request like a Qdrant server refusing the key, and remembers the headers."""

    seen: list[dict[str, str]] = []
    status = 401

    def _answer(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"status": {"error": "Must provide an API key or an Authorization bearer token"}}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def refusing_server():
    _Refusing.seen = []
    with loopback_http(_Refusing) as port:
        yield port


@pytest.mark.parametrize("status", [401, 403])
def test_the_api_key_comes_from_the_environment_and_a_refusal_is_an_authentication_error(
        refusing_server, monkeypatch, status):
    _Refusing.status = status
    monkeypatch.setenv("QDRANT_API_KEY", "s3cret-from-env")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qdrant-client warns about an API key over plain http
        with pytest.raises(AuthenticationFailed) as err:
            with connectors.open_store(f"qdrant+http://127.0.0.1:{refusing_server}?collection=docs") as s:
                s.describe()
    assert f"HTTP {status}" in str(err.value) and "QDRANT_API_KEY" in str(err.value)
    assert "s3cret" not in str(err.value)
    assert _Refusing.seen and _Refusing.seen[0].get("api-key") == "s3cret-from-env"


def test_the_api_key_can_come_from_another_variable_or_a_file(refusing_server, monkeypatch, tmp_path):
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    monkeypatch.setenv("MY_QDRANT_KEY", "key-from-other-env")
    key_file = tmp_path / "key"
    key_file.write_text("  key-from-file\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for options, expected in (("&secret_env=MY_QDRANT_KEY", "key-from-other-env"),
                                  (f"&secret_file={key_file}", "key-from-file"), ("", None)):
            _Refusing.seen = []
            with pytest.raises(AuthenticationFailed):
                with connectors.open_store(f"qdrant+http://127.0.0.1:{refusing_server}?collection=docs{options}") as s:
                    s.describe()
            assert _Refusing.seen[0].get("api-key") == expected
    assert parse_uri(f"qdrant+http://h:1?collection=d&secret_file={key_file}").secret == "key-from-file"


def test_local_mode_ignores_the_api_key_and_refuses_server_options(qh, small_int, monkeypatch):
    name, _ = small_int
    monkeypatch.setenv("QDRANT_API_KEY", "unused")
    with connectors.open_store(qh.uri(name)) as s:
        assert s.describe().count == 30
    with pytest.raises(InvalidURI, match="prefer_grpc"):
        connectors.open_store(qh.uri(name) + "&prefer_grpc=true")
    with pytest.raises(InvalidURI, match="prefer_grpc"):
        connectors.open_store("qdrant+http://127.0.0.1:1?collection=d&prefer_grpc=maybe")


@pytest.mark.parametrize("status, content, write, expected", [
    (404, b'{"status":{"error":"Not found: Collection `docs` doesn\'t exist!"}}', False, CollectionNotFound),
    (404, b'{"status":{"error":"Not found: No point with id 5 found"}}', True, WriteFailed),
    (401, b"", False, AuthenticationFailed),
    (403, b'{"status":{"error":"Forbidden"}}', True, AuthenticationFailed),
    (400, b'{"status":{"error":"Wrong input: Vector dimension error"}}', True, WriteFailed),
], ids=["404-collection", "404-point", "401", "403", "400"])
def test_server_answers_are_translated(status, content, write, expected):
    conn = qdrant_client_module._Connection(parse_uri(f"qdrant+http://127.0.0.1:{closed_port()}?collection=docs"))
    try:
        with pytest.raises(expected) as err:
            with conn.calls("update_vectors", "docs", write=write):
                raise UnexpectedResponse(status, "reason", content, None)
        assert "docs" in str(err.value) or status in (401, 403)
    finally:
        conn.close()
