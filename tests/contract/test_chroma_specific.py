"""Chroma behaviour beyond the generic contract: the re-embedding trap, metric sources, paging
safety, exclusion search at scale, credentials, tenants/databases, log and state formats.

Every test runs against the real engines of the selected chroma harnesses (``chroma-persistent``,
``chroma-http``). Credentials: ``chroma run`` (chromadb 1.5.9) enforces no authentication (see
tests/backends/chroma.py), so the credentials tests put a small authenticating reverse proxy (the usual way to secure a
self-hosted 1.x server) in front of the real server.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version

chromadb = pytest.importorskip("chromadb")

import connectors  # noqa: E402
from connectors import (  # noqa: E402
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    InvalidURI,
    LabelledQuery,
    StateRecord,
    UnknownIds,
    UnsupportedCollection,
)
from connectors import chroma as chroma_connector  # noqa: E402
from connectors._uri import parse_uri  # noqa: E402
from tests._procs import closed_port, free_port  # noqa: E402
from tests.backends import random_vectors  # noqa: E402
from tests.backends.chroma import ChromaHarness, chroma_name  # noqa: E402
from tests.conftest import fixture_name, selected_harnesses  # noqa: E402
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings  # noqa: E402
from chromadb.utils.embedding_functions import register_embedding_function  # noqa: E402

CHROMA = [n for n in ("chroma-persistent", "chroma-http") if n in selected_harnesses()]
DIM = 16


@pytest.fixture(params=CHROMA)
def chroma(request) -> ChromaHarness:
    return request.getfixturevalue(fixture_name(request.param))


@pytest.fixture
def http_harness(request) -> ChromaHarness:
    if "chroma-http" not in CHROMA:
        pytest.skip("chroma-http is not among the selected harnesses")
    return request.getfixturevalue("harness_chroma_http")


# -- the re-embedding trap -----------------------------------------------------------------------


@register_embedding_function
class Tripwire(EmbeddingFunction[Documents]):
    """An embedding function that counts its calls and always fails. It is persisted in the
    collection's configuration, so chromadb rebuilds it whenever the collection is opened, even
    with ``embedding_function=None``."""

    calls = 0

    def __init__(self, dim: int = DIM):
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:
        Tripwire.calls += 1
        raise RuntimeError("tripwire: an embedding function was called")

    @staticmethod
    def name() -> str:
        return "nudge_sync_tripwire"

    @staticmethod
    def build_from_config(config: dict) -> Tripwire:
        return Tripwire(int(config.get("dim", DIM)))

    def get_config(self) -> dict:
        return {"dim": self.dim}

    def default_space(self) -> str:
        return "ip"

    def supported_spaces(self) -> list[str]:
        return ["ip", "cosine", "l2"]


def _create_with_tripwire(h: ChromaHarness, name: str, n: int):
    from tests.backends.chroma import rich_document, rich_metadata

    coll = h.client.create_collection(chroma_name(name), embedding_function=Tripwire(DIM),
                                      configuration={"hnsw": {"space": "ip"}})
    ids = h.make_ids(n)
    vecs = random_vectors(n, DIM, seed=21)
    coll.add(ids=ids, embeddings=vecs, metadatas=[rich_metadata(i) for i in range(n)],
             documents=[rich_document(i) for i in range(n)])
    return ids, vecs


def test_no_operation_ever_calls_the_embedding_function(chroma, collection_name):
    ids, vecs = _create_with_tripwire(chroma, collection_name, 120)
    control = f"{collection_name}_control"
    try:
        persisted = chroma._get(collection_name).configuration_json["embedding_function"]
        assert persisted.get("name") == "nudge_sync_tripwire"
        snap0 = chroma.snapshot(collection_name)
        Tripwire.calls = 0
        with connectors.open_store(chroma.uri(collection_name)) as s:
            info = s.describe()
            assert info.details["embedding_function"] == "nudge_sync_tripwire"
            assert sum(len(b) for b, _ in s.iter_vectors(batch_size=50)) == 120
            s.get_vectors(ids[:10])
            new = random_vectors(60, DIM, seed=22)
            assert s.update_vectors(ids[:60], new) == 60
            s.search(vecs[:5], k=5, exclude=ids[:3])
            s.append_log(f"{collection_name}_log", [LabelledQuery("q1", vecs[0], [ids[0]])])
            list(s.read_log(f"{collection_name}_log"))
        assert Tripwire.calls == 0, "an embedding function was called"
        assert chroma.snapshot(collection_name) == snap0, "documents or metadata changed"
        after = chroma.vectors(collection_name)
        assert np.array_equal(np.stack([after[i] for i in ids[:60]]), new)
        assert np.array_equal(np.stack([after[i] for i in ids[60:]]), vecs[60:])

        # Control: the trap is armed. A documents= update (what the keep incident did) calls it.
        _create_with_tripwire(chroma, control, 3)
        with pytest.raises(Exception, match="tripwire"):
            chroma._get(control).update(ids=ids[:1], documents=["new text"])
        assert Tripwire.calls == 1
    finally:
        for name in (collection_name, control, f"{collection_name}_log"):
            chroma.drop(name)


# -- metric ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("space, metric", [("cosine", "cosine"), ("ip", "dot"), ("l2", "l2")])
def test_metric_from_legacy_hnsw_space_metadata(chroma, collection_name, space, metric):
    coll = chroma.client.create_collection(chroma_name(collection_name), metadata={"hnsw:space": space},
                                           embedding_function=None)
    vecs = random_vectors(50, DIM, seed=3)
    coll.add(ids=chroma.make_ids(50), embeddings=vecs)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            info = s.describe()
            assert info.metric == metric
            # and the scores follow it (what a legacy collection returns must match, too)
            res = s.search(vecs[:1], k=1)
            v = vecs[0].astype(np.float64)
            expected = {"cosine": 1.0, "dot": float(v @ v), "l2": 0.0}[metric]
            assert res.scores[0, 0] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    finally:
        chroma.drop(collection_name)


def test_default_space_is_l2(chroma, collection_name):
    coll = chroma.client.create_collection(chroma_name(collection_name), embedding_function=None)
    coll.add(ids=["aaa"], embeddings=random_vectors(1, DIM))
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            assert s.describe().metric == "l2"
    finally:
        chroma.drop(collection_name)


# -- reading -----------------------------------------------------------------------------------------


def test_scan_fails_loudly_when_records_before_the_cursor_are_deleted(chroma, collection_name, monkeypatch):
    # pages of batch_size rows (normally a page holds ~4 MiB of vectors, far more than 50 records)
    monkeypatch.setattr("connectors.chroma.store.read_page_rows", lambda dimension, batch_size: batch_size)
    ids = chroma.make_ids(50)
    chroma.create(collection_name, ids, random_vectors(50, DIM), metric="dot", rich=False)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            scan = s.iter_vectors(batch_size=10)
            first, _ = next(scan)
            assert first == ids[:10]  # storage order = insertion order
            chroma._get(collection_name).delete(ids=[ids[3]])  # shifts every later page by one
            with pytest.raises(ConnectorError, match="changed while it was being read"):
                list(scan)
    finally:
        chroma.drop(collection_name)


def test_scan_survives_updates_and_appends_during_the_scan(chroma, collection_name, monkeypatch):
    monkeypatch.setattr("connectors.chroma.store.read_page_rows", lambda dimension, batch_size: batch_size)  # 5 pages
    ids = chroma.make_ids(50)
    chroma.create(collection_name, ids, random_vectors(50, DIM), metric="dot", rich=False)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            seen = collections.Counter()
            for n, (batch, _) in enumerate(s.iter_vectors(batch_size=10)):
                seen.update(batch)
                if n == 1:  # an update keeps storage order; new records go to the end
                    s.update_vectors(ids[:20], random_vectors(20, DIM, seed=5))
                    chroma._get(collection_name).add(ids=["zz-new"], embeddings=random_vectors(1, DIM))
        assert all(seen[i] == 1 for i in ids) and max(seen.values()) == 1
    finally:
        chroma.drop(collection_name)


# -- writing -----------------------------------------------------------------------------------------


def test_int_ids_are_unknown_and_nothing_is_written(chroma, collection_name):
    ids = chroma.make_ids(10)
    vecs = random_vectors(10, DIM)
    chroma.create(collection_name, ids, vecs, metric="dot", rich=True)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            with pytest.raises(UnknownIds) as err:
                s.update_vectors([ids[0], 7], random_vectors(2, DIM, seed=9))
            assert err.value.ids == [7]
            found, _, missing = s.get_vectors([7, ids[1]])
            assert found == [ids[1]] and missing == [7]
        assert np.array_equal(chroma.vectors(collection_name)[ids[0]], vecs[0])
    finally:
        chroma.drop(collection_name)


def test_write_chunks_respect_the_http_body_limit(http_harness, collection_name):
    """chromadb's own max batch (5,461) does not fit ``chroma run``'s 40 MiB body at 1,536-d."""
    coll = http_harness.client.create_collection(chroma_name(collection_name), embedding_function=None)
    try:
        coll.add(ids=["one"], embeddings=random_vectors(1, 1536))
        wide = random_vectors(http_harness.client.get_max_batch_size(), 1536, seed=1)
        with pytest.raises(Exception, match="(?i)payload too large"):
            coll.update(ids=[f"x{i}" for i in range(len(wide))], embeddings=wide)
        with connectors.open_store(http_harness.uri(collection_name)) as s:
            conn = s.conn
            for dim in (8, 384, 1536, 4096):
                rows = conn.rows_per_write(dim)
                assert 1 <= rows <= conn.max_batch()
                assert rows * dim * 4 * 4 / 3 < 30 * 2**20  # base64 body well under 40 MiB
            assert conn.rows_per_write(384) == conn.max_batch()  # common dims: the server's cap
    finally:
        http_harness.drop(collection_name)


# -- search ------------------------------------------------------------------------------------------


def test_exclusion_search_with_thousands_of_excluded_ids(chroma, collection_name):
    n, k = 6000, 10
    ids = chroma.make_ids(n)
    vecs = random_vectors(n, DIM, seed=31)
    chroma.create(collection_name, ids, vecs, metric="dot", rich=False)
    queries = random_vectors(100, DIM, seed=32)
    sims = queries.astype(np.float64) @ vecs.astype(np.float64).T
    top = np.argsort(-sims, axis=1, kind="stable")
    rng = np.random.default_rng(33)
    # the 30 best records of every query are excluded, plus 2,000 random ones
    excluded_pos = set(top[:, :30].ravel().tolist()) | set(rng.choice(n, 2000, replace=False).tolist())
    exclude = {ids[j] for j in excluded_pos}
    assert len(exclude) > 3000, len(exclude)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            calls = collections.Counter()
            coll = s._collection()
            raw_query = coll.query

            def counting_query(**kw):
                calls["calls"] += 1
                calls["rows"] += len(kw["query_embeddings"]) * kw["n_results"]
                return raw_query(**kw)

            coll.query = counting_query
            res = s.search(queries, k=k, exclude=exclude)
        allowed = [j for j in range(n) if j not in excluded_pos]
        hits = 0
        for qi, row in enumerate(res.ids):
            assert len(row) == k and not set(row) & exclude
            truth = [ids[j] for j in top[qi] if j not in excluded_pos][:k]
            hits += len(set(truth) & set(row))
        assert hits / (k * len(queries)) >= 0.9
        assert len(allowed) > k
        # far fewer result rows than the naive over-fetch of k + |exclude| for every query
        assert calls["rows"] < 0.1 * len(queries) * (k + len(exclude))
    finally:
        chroma.drop(collection_name)


def test_exclusion_leaving_fewer_than_k(chroma, collection_name):
    ids = chroma.make_ids(40)
    vecs = random_vectors(40, DIM, seed=41)
    chroma.create(collection_name, ids, vecs, metric="l2", rich=False)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            res = s.search(vecs[:3], k=10, exclude=ids[:37] + [12345])
            assert all(sorted(row) == sorted(ids[37:]) for row in res.ids)
            assert np.isneginf(res.scores[:, 3:]).all() and np.isfinite(res.scores[:, :3]).all()
            res = s.search(vecs[:2], k=5, exclude=ids)
            assert res.ids == [[], []] and np.isneginf(res.scores).all()
    finally:
        chroma.drop(collection_name)


# -- credentials ---------------------------------------------------------------------------------


def test_auth_headers():
    assert chroma_connector.auth_headers(None, None) == {}
    assert chroma_connector.auth_headers(None, "tok") == {"Authorization": "Bearer tok"}
    assert chroma_connector.auth_headers("bearer", "tok") == {"Authorization": "Bearer tok"}
    assert chroma_connector.auth_headers("X-Chroma-Token", "tok") == {"X-Chroma-Token": "tok"}
    basic = chroma_connector.auth_headers("basic", "alice:s3:cr3t")
    assert basic == {"Authorization": "Basic " + base64.b64encode(b"alice:s3:cr3t").decode()}
    assert chroma_connector.auth_headers("basic", "pw", user="bob") == {
        "Authorization": "Basic " + base64.b64encode(b"bob:pw").decode()}
    with pytest.raises(InvalidURI, match="CHROMA_AUTH_TOKEN"):
        chroma_connector.auth_headers("bearer", None)
    with pytest.raises(InvalidURI, match="auth='oauth'"):
        chroma_connector.auth_headers("oauth", "tok")
    with pytest.raises(InvalidURI, match="user:password") as err:
        chroma_connector.auth_headers("basic", "lonely-password")
    assert "lonely-password" not in str(err.value)
    with pytest.raises(InvalidURI) as err:
        chroma_connector.auth_headers("bearer", "evil\r\nX-Injected: 1")
    assert "evil" not in str(err.value)


def test_auth_option_on_a_local_store_is_refused(tmp_path):
    with pytest.raises(InvalidURI, match="auth"):
        connectors.open_store(f"chroma://{tmp_path}?collection=docs&auth=bearer")


class _AuthProxy:
    """A loopback reverse proxy that demands one header value, like nginx ``auth_request`` in front
    of a self-hosted Chroma; it forwards accepted requests to the real server and records headers."""

    def __init__(self, upstream_port: int, header: str, value: str):
        proxy = self
        self.seen: list[tuple[str, str | None]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = self.headers.get(header)
                proxy.seen.append((self.path, got))
                if got != value and not self.path.endswith("/heartbeat"):
                    payload = b'{"error":"AuthError","message":"Unauthorized"}'
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                up = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                up.request(self.command, self.path, body=body or None, headers=fwd)
                resp = up.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                up.close()

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _AuthProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "auth, secret, header, value",
    [
        (None, "t0ken", "Authorization", "Bearer t0ken"),
        ("x-chroma-token", "t0ken", "X-Chroma-Token", "t0ken"),
        ("basic", "alice:pa55", "Authorization", "Basic " + base64.b64encode(b"alice:pa55").decode()),
    ],
    ids=["bearer", "x-chroma-token", "basic"],
)
def test_credentials_are_sent_on_every_request(http_harness, collection_name, monkeypatch, auth, secret, header, value):
    ids = http_harness.make_ids(30)
    http_harness.create(collection_name, ids, random_vectors(30, DIM), metric="dot", rich=True)
    upstream = int(http_harness.base_url.rsplit(":", 1)[1])
    opt = f"&auth={auth}" if auth else ""
    try:
        with _AuthProxy(upstream, header, value) as proxy:
            uri = f"chroma+http://127.0.0.1:{proxy.port}?collection={chroma_name(collection_name)}{opt}"
            monkeypatch.setenv("CHROMA_AUTH_TOKEN", secret)
            with connectors.open_store(uri) as s:
                assert s.describe().count == 30
                assert s.update_vectors(ids[:5], random_vectors(5, DIM, seed=2)) == 5
                assert len(s.search(random_vectors(2, DIM), k=3).ids[0]) == 3
            authed = [p for p, got in proxy.seen if not p.endswith("/heartbeat")]
            assert len(authed) > 5 and all(got == value for p, got in proxy.seen if p in authed)

            monkeypatch.setenv("CHROMA_AUTH_TOKEN", secret + "-wrong")
            with pytest.raises(AuthenticationFailed, match=f"127.0.0.1:{proxy.port}") as err:
                connectors.open_store(uri).describe()
            assert secret not in str(err.value)
            monkeypatch.delenv("CHROMA_AUTH_TOKEN")
            no_secret = uri.replace(opt, "")
            with pytest.raises(AuthenticationFailed):
                connectors.open_store(no_secret).describe()
    finally:
        http_harness.drop(collection_name)


# -- connection failures --------------------------------------------------------------------------


def test_unreachable_server_fails_fast_naming_host_and_port():
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
        connectors.open_store(f"chroma+http://127.0.0.1:{port}?collection=docs&retry_budget=0").describe()
    assert time.monotonic() - t0 < 10


def test_silent_server_times_out_naming_host_and_port():
    """A port that accepts connections but never answers (a hung server) must not hang us."""
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(8)  # never accept()ed: the kernel completes the handshake, nobody answers
        port = sink.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
            connectors.open_store(f"chroma+http://127.0.0.1:{port}?collection=docs&timeout=1&retry_budget=0").describe()
        assert time.monotonic() - t0 < 10


def test_local_path_without_a_database_is_not_created(tmp_path):
    target = tmp_path / "nothing-here"
    with pytest.raises(CollectionNotFound, match="no Chroma database"):
        connectors.open_store(f"chroma://{target}?collection=docs").describe()
    assert not target.exists()


def test_invalid_collection_name_is_reported(chroma):
    uri = chroma.uri("abc").replace("collection=abc", "collection=x_")
    with pytest.raises(InvalidURI, match="'x_' is not a valid Chroma name"):
        connectors.open_store(uri).describe()


# -- tenants and databases ------------------------------------------------------------------------


def _admin(h: ChromaHarness):
    from chromadb.config import Settings

    if h.is_server:
        port = int(h.base_url.rsplit(":", 1)[1])
        return chromadb.AdminClient(Settings(chroma_api_impl="chromadb.api.fastapi.FastAPI",
                                             chroma_server_host="127.0.0.1", chroma_server_http_port=port))
    return chromadb.AdminClient(Settings(is_persistent=True, persist_directory=str(h.path)))


def test_database_option_selects_the_database(chroma, collection_name):
    db = "nudge_sync_db"
    admin = _admin(chroma)
    if db not in {d["name"] for d in admin.list_databases()}:
        admin.create_database(db)
    if chroma.is_server:
        other = chromadb.HttpClient(host="127.0.0.1", port=int(chroma.base_url.rsplit(":", 1)[1]), database=db)
    else:
        other = chromadb.PersistentClient(path=str(chroma.path), database=db)
    name = chroma_name(collection_name)
    coll = other.create_collection(name, configuration={"hnsw": {"space": "ip"}}, embedding_function=None)
    coll.add(ids=chroma.make_ids(12), embeddings=random_vectors(12, DIM))
    try:
        with connectors.open_store(chroma.uri(collection_name) + f"&database={db}") as s:
            info = s.describe()
            assert info.count == 12 and info.details["database"] == db
        with connectors.open_store(chroma.uri(collection_name)) as s:  # default database
            with pytest.raises(CollectionNotFound, match=name):
                s.describe()
        with pytest.raises(CollectionNotFound, match="no_such_db"):
            connectors.open_store(chroma.uri(collection_name) + "&database=no_such_db").describe()
        with pytest.raises(CollectionNotFound, match="no_such_tenant"):
            connectors.open_store(chroma.uri(collection_name) + "&tenant=no_such_tenant").describe()
    finally:
        other.delete_collection(name)
        other.close()


# -- query log format -------------------------------------------------------------------------------


def _log_meta(**fields):
    """Native log metadata with every field present (None = absent), as the README recommends:
    Chroma merges metadata on upsert, and chroma#7594 can attach stale list values to new records."""
    return {"relevant_ids": None, "relevant_ids_json": None, "grades": None, "grades_json": None, "timestamp": None,
            "split": None, **fields}


def test_query_log_format_is_plain_chroma_metadata(chroma, collection_name):
    ids = chroma.make_ids(20)
    chroma.create(collection_name, ids, random_vectors(20, DIM), metric="dot", rich=False)
    log = f"{collection_name}_log"
    ours = ("relevant_ids", "relevant_ids_json", "grades", "grades_json", "timestamp", "split")
    try:
        # what an application writes with the native client
        native = chroma.client.get_or_create_collection(log, embedding_function=None)
        q = random_vectors(5, DIM, seed=50)
        native.upsert(
            ids=["q-a", "q-b", "q-c", "q-e"],
            embeddings=q[[0, 1, 2, 4]],
            metadatas=[
                _log_meta(relevant_ids=[ids[0], ids[1]], grades=[2, 1], timestamp=1_700_000_000, split="val"),
                _log_meta(relevant_ids=ids[2]),  # a single id as a plain string
                _log_meta(relevant_ids_json=json.dumps([ids[3], 42])),  # mixed types
                _log_meta(relevant_ids=[ids[4]], extra="ignored"),
            ],
        )
        with connectors.open_store(chroma.uri(collection_name)) as s:
            got = {e.query_id: e for e in s.read_log(log, batch_size=2)}
            assert got["q-a"].relevant_ids == [ids[0], ids[1]] and got["q-a"].grades == [2.0, 1.0]
            assert got["q-a"].timestamp == 1_700_000_000.0 and got["q-a"].split == "val"
            assert got["q-b"].relevant_ids == [ids[2]] and got["q-b"].grades is None
            assert got["q-c"].relevant_ids == [ids[3], 42]
            assert got["q-e"].relevant_ids == [ids[4]]
            assert np.array_equal(got["q-c"].vector, q[2])

            # what we write reads natively as documented
            s.append_log(log, [LabelledQuery("q-f", q[0], [ids[5], ids[6]], grades=[1.0, 3.0],
                                             timestamp=1_700_000_123.25, split="train"),
                               LabelledQuery("q-g", q[1], [ids[7], 99])])
            row = native.get(ids=["q-f", "q-g"], include=["metadatas"])
            meta = {i: {k: v for k, v in (m or {}).items() if k in ours} for i, m in zip(row["ids"], row["metadatas"])}
            assert meta["q-f"] == {"relevant_ids": [ids[5], ids[6]], "grades": [1.0, 3.0],
                                   "timestamp": 1_700_000_123.25, "split": "train"}
            assert meta["q-g"] == {"relevant_ids_json": json.dumps([ids[7], 99])}

            # replacing an entry removes the fields it no longer has (Chroma merges on upsert)
            s.append_log(log, [LabelledQuery("q-a", q[0], [ids[9]])])
            (a,) = [e for e in s.read_log(log) if e.query_id == "q-a"]
            assert a.relevant_ids == [ids[9]] and a.grades is None and a.timestamp is None and a.split is None

            native.upsert(ids=["q-bad"], embeddings=q[:1], metadatas=[_log_meta(relevant_ids=[ids[0]], grades=[1, 2])])
            with pytest.raises(UnsupportedCollection, match="q-bad.*grades"):
                list(s.read_log(log))
            # the entry rule holds for entries written natively: no relevant ids is refused, by name
            native.upsert(ids=["q-bad"], embeddings=q[:1], metadatas=[_log_meta()])
            with pytest.raises(UnsupportedCollection, match="q-bad.*relevant_ids must be a non-empty list"):
                list(s.read_log(log))
    finally:
        chroma.drop(log)
        chroma.drop(collection_name)


def test_log_entries_are_immune_to_stale_list_metadata(chroma, collection_name):
    """chroma#7594: delete_collection leaves list-valued metadata behind, keyed by internal row ids
    that new records reuse. Our entries write every field (None = absent), so they never inherit it."""
    chroma.create(collection_name, chroma.make_ids(5), random_vectors(5, DIM), metric="dot", rich=False)
    ghost = f"{collection_name}_ghost"
    log = f"{collection_name}_log"
    try:
        coll = chroma.client.create_collection(ghost, embedding_function=None)
        coll.add(ids=[f"g{i}" for i in range(40)], embeddings=random_vectors(40, DIM),
                 metadatas=[{"relevant_ids": ["ghost-id"], "grades": [9.0]} for _ in range(40)])
        chroma.client.delete_collection(ghost)  # its list metadata stays on disk (chroma#7594)
        with connectors.open_store(chroma.uri(collection_name)) as s:
            entries = [LabelledQuery(f"q{j}", random_vectors(1, DIM, seed=j)[0], [f"doc-{j:06d}"]) for j in range(10)]
            s.append_log(log, entries)
            native = chroma.client.get_collection(log, embedding_function=None)
            native.add(ids=["user-1"], embeddings=random_vectors(1, DIM), metadatas=[{"timestamp": 1_700_000_000.0}])
            got = {}
            try:
                for e in s.read_log(log):
                    got[e.query_id] = e
            except UnsupportedCollection as exc:  # user-1 without the ghost has no relevant ids
                assert "'user-1'" in str(exc) and "relevant_ids" in str(exc)
        for j in range(10):
            assert got[f"q{j}"].relevant_ids == [f"doc-{j:06d}"] and got[f"q{j}"].grades is None
        # control: a record written without explicit Nones may inherit the ghost (documented caveat)
        ghosted = "user-1" in got and got["user-1"].relevant_ids == ["ghost-id"]
        if Version(chromadb.__version__) <= Version("1.5.9"):
            assert ghosted, "chroma#7594 did not reproduce: the control is no longer meaningful"
    finally:
        for name in (log, ghost, collection_name):
            chroma.drop(name)


# -- state ---------------------------------------------------------------------------------------


def test_state_vectors_round_trip_special_floats(chroma, collection_name):
    ids = chroma.make_ids(3)
    chroma.create(collection_name, ids, random_vectors(3, 6), metric="dot", rich=False)
    special = np.array([[-0.0, 1e-45, 3.4028235e38, -3.4028235e38, 1.17549435e-38, np.float32(0.1)],
                        [np.nextafter(np.float32(1), np.float32(2)), -1e-40, 7.0, -0.5, 2.0**-126, 1 / 3]],
                       dtype=np.float32)
    with connectors.open_store(chroma.uri(collection_name)) as s:
        state = s.state(f"{collection_name}_state")
        try:
            state.create(6)
            state.put("original", [StateRecord("a", special[0], {"x": 1}), StateRecord("b", special[1], {}),
                                   StateRecord("c", None, {"note": "ünï"})])
            got = {r.key: r for r in state.get("original", ["a", "b", "c"])}
            assert got["a"].vector.tobytes() == special[0].tobytes()
            assert got["b"].vector.tobytes() == special[1].tobytes()
            assert got["c"].vector is None and got["c"].meta == {"note": "ünï"}
        finally:
            state.drop()
    chroma.drop(collection_name)


def test_update_read_back_is_bit_exact_for_special_floats(chroma, collection_name):
    ids = chroma.make_ids(2)
    chroma.create(collection_name, ids, random_vectors(2, 4), metric="dot", rich=True)
    new = np.array([[-0.0, 1e-45, 3.4028235e38, 0.1], [1 / 3, -1e-40, 2.0**-126, -7.25]], dtype=np.float32)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            assert s.update_vectors(ids, new) == 2
        after = chroma.vectors(collection_name)
        assert np.stack([after[i] for i in ids]).tobytes() == new.tobytes()
    finally:
        chroma.drop(collection_name)


def test_close_keeps_other_clients_of_the_same_directory_working(tmp_path):
    path = (tmp_path / "db").resolve()
    mine = chromadb.PersistentClient(path=str(path))
    mine.create_collection("shared", embedding_function=None).add(ids=["a"], embeddings=[[1.0, 2.0]])
    with connectors.open_store(f"chroma://{path}?collection=shared") as s:
        assert s.describe().count == 1
    assert mine.get_collection("shared", embedding_function=None).count() == 1  # still usable
    mine.close()


def test_harness_names_are_valid_chroma_names():
    assert chroma_name("c7_test_update_with_unknown_ids_is_refused_") == "c7_test_update_with_unknown_ids_is_refused_0"
    assert chroma_name("contract_big_chroma_http") == "contract_big_chroma_http"


def test_paths_are_shared_with_the_harness(tmp_path):
    # the connector resolves the path like the harness, so one chromadb System serves both
    assert parse_uri(f"chroma://{tmp_path}/./x?collection=abc").location == str(Path(tmp_path / "x").resolve())


def test_empty_collection(chroma, collection_name):
    chroma.client.create_collection(chroma_name(collection_name), embedding_function=None)
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            with pytest.raises(UnsupportedCollection, match="empty"):
                s.describe()
            assert list(s.iter_vectors()) == []
            found, vecs, missing = s.get_vectors(["a", "b"])
            assert found == [] and missing == ["a", "b"] and len(vecs) == 0
            with pytest.raises(UnknownIds):
                s.update_vectors(["a"], random_vectors(1, DIM))
            res = s.search(random_vectors(2, DIM), k=3)
            assert res.ids == [[], []] and res.scores.shape == (2, 3)
    finally:
        chroma.drop(collection_name)


def test_update_on_a_cosine_collection(chroma, collection_name):
    """Cosine collections hand back a renormalised copy (about one float32 ulp of the norm off),
    so the read-back check is tolerant there; the update itself must still land everywhere."""
    n = 1500  # above hnsw sync_threshold (1000)
    ids = chroma.make_ids(n)
    chroma.create(collection_name, ids, random_vectors(n, DIM, seed=60) * 3, metric="cosine", rich=True)
    snap = chroma.snapshot(collection_name)
    new = random_vectors(1200, DIM, seed=61) * 5
    try:
        with connectors.open_store(chroma.uri(collection_name)) as s:
            assert s.describe().details["vectors_round_trip"] != "exact"
            assert s.update_vectors(ids[:1200], new) == 1200
            res = s.search(new[:5], k=1)
            assert [row[0] for row in res.ids] == ids[:5]
            np.testing.assert_allclose(res.scores[:, 0], 1.0, atol=1e-5)
        after = chroma.vectors(collection_name)
        got = np.stack([after[i] for i in ids[:1200]])
        assert np.max(np.abs(got - new)) <= 1e-6 * np.linalg.norm(new, axis=1).max()
        assert chroma.snapshot(collection_name) == snap
    finally:
        chroma.drop(collection_name)
