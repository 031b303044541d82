"""What a query log can hold on each real backend, just under and just over every limit, and appends
that are all or nothing: a write that fails part-way leaves the log exactly as it was, read back
with the database's own client.

Limits (measured here; the connectors document them):
* Chroma: at most 5,461 list elements per record's metadata (5,462 break the collection for good);
  nudge-sync keeps longer lists as JSON text, so any list up to the 16 MiB entry size is stored.
* Milvus: the log's key ``query_id`` holds 2,048 bytes of UTF-8; a row's dynamic fields 65,536 bytes
  of JSON (servers enforce both; Milvus Lite counts characters and has no JSON limit, and nudge-sync
  applies the servers' rules there too).
* Qdrant and Chroma: an entry's fields may take 16 MiB as JSON (half a server's request limit).

The tests share one small data collection per backend (the log takes its dimension; no test writes
to it); each test's log is its own. ``milvus-lite-server`` is left out (tests/conftest.py
``TWIN_HARNESSES``): Milvus Lite's limits are checked on ``milvus-lite``, a server's on ``milvus-2.3.5``.
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest

import connectors
from connectors import InvalidEntry, LabelledQuery, WriteFailed
from connectors._log import MAX_ENTRY_BYTES
from tests.backends import random_vectors
from tests.backends.dump import dump_collection
from tests.conftest import TWIN_HARNESSES, harness_without

harness = harness_without(*TWIN_HARNESSES)

DIM = 8
T0 = 1_767_225_600.0


@pytest.fixture(scope="module")
def data(harness):
    """A small data collection the module's logs take their dimension from."""
    name = "log_limits_" + harness.name.replace("-", "_").replace(".", "_")
    harness.drop(name)
    harness.create(name, harness.make_ids(5), random_vectors(5, DIM, seed=3), metric="dot", rich=False)
    yield name
    harness.drop(name)


@pytest.fixture
def log_of(harness, request, data):
    """The name of this test's own log of the shared data collection (dropped afterwards)."""
    log = f"{data}_{request.node.originalname.removeprefix('test_')[:40].rstrip('_')}"
    harness.drop(log)
    yield log
    harness.drop(log)


def entry(qid: str, ids: list, *, grades=None, seed: int = 0) -> LabelledQuery:
    return LabelledQuery(qid, random_vectors(1, DIM, seed=seed)[0], ids, grades, T0, "train")


def native_log(harness, log: str) -> dict[str, str]:
    return dump_collection(harness.backend, harness.client, log)


def test_5500_answers_with_grades_are_stored_and_the_log_stays_readable(harness, data, log_of):
    """Issue #11 defect 1: 5,500 relevant ids made every later read of a Chroma log fail."""
    ids = list(range(5500)) if harness.backend != "chroma" else [f"d{i}" for i in range(5500)]
    many = entry("many", ids, grades=[1.0 + (i % 3) for i in range(5500)])
    with connectors.open_store(harness.uri(data)) as store:
        assert store.append_log(log_of, [many, entry("one", ids[:1], seed=1)]) == 2
        got = {e.query_id: e for e in store.read_log(log_of)}
    assert got["many"].relevant_ids == ids and got["many"].grades == many.grades
    assert got["one"].relevant_ids == ids[:1]
    assert len(native_log(harness, log_of)) >= 2  # the database's own client reads it too


def _size_of_refused(store, log: str, q: LabelledQuery) -> int:
    with pytest.raises(InvalidEntry) as exc:
        store.append_log(log, [q])
    return int(re.search(r"take ([\d,]+) bytes", str(exc.value)).group(1).replace(",", ""))


def test_entry_size_limit_just_under_and_just_over(harness, data, log_of):
    if harness.backend == "milvus":
        pytest.skip("Milvus' own limit is far lower (test_milvus_limits_just_under_and_just_over)")
    with connectors.open_store(harness.uri(data)) as store:
        probe = MAX_ENTRY_BYTES + 1000
        over = _size_of_refused(store, log_of, entry("big", ["x" * probe]))
        fit = "x" * (probe - (over - MAX_ENTRY_BYTES))  # one id of the length that makes exactly the limit
        with pytest.raises(InvalidEntry, match=rf"take {MAX_ENTRY_BYTES + 1:,} bytes .* at most {MAX_ENTRY_BYTES:,}"):
            store.append_log(log_of, [entry("big", [fit + "x"])])
        assert not store.log_exists(log_of)  # refused before anything was created
        store.append_log(log_of, [entry("big", [fit])])
        (got,) = list(store.read_log(log_of))
    assert got.relevant_ids == [fit]


def test_chroma_lists_past_4096_elements_become_json_text(harness, data, log_of):
    if harness.backend != "chroma":
        pytest.skip("Chroma's metadata lists")
    entries = [entry("at-limit", [f"d{i}" for i in range(2048)], grades=[2.0] * 2048),  # 4,096 elements
               entry("past-limit", [f"d{i}" for i in range(2049)], grades=[2.0] * 2049),  # 4,098
               entry("past-engine-limit", [f"d{i}" for i in range(5462)])]
    with connectors.open_store(harness.uri(data)) as store:
        store.append_log(log_of, entries)
        got = {e.query_id: e for e in store.read_log(log_of)}
    assert {q: (len(e.relevant_ids), len(e.grades or ())) for q, e in got.items()} == {
        "at-limit": (2048, 2048), "past-limit": (2049, 2049), "past-engine-limit": (5462, 0)}
    native = harness.client.get_collection(log_of, embedding_function=None)
    metas = dict(zip(*(lambda g: (g["ids"], g["metadatas"]))(native.get(include=["metadatas"]))))
    assert isinstance(metas["at-limit"]["relevant_ids"], list) and "relevant_ids_json" not in metas["at-limit"]
    for q in ("past-limit", "past-engine-limit"):
        assert "relevant_ids" not in metas[q] and isinstance(metas[q]["relevant_ids_json"], str)
    assert metas["past-limit"]["grades_json"] == "[" + ", ".join(["2.0"] * 2049) + "]"


def test_chroma_breaks_a_collection_past_5461_list_elements(harness, data):
    """The engine limit behind LIST_ELEMENTS, written with Chroma's own client: if this starts to
    pass 5,462 elements, the limit may be raised."""
    if harness.backend != "chroma":
        pytest.skip("Chroma's metadata lists")
    if harness.name != "chroma-persistent":  # the same engine behind HTTP: a minute of suite time
        pytest.skip("the engine's limit is measured on chroma-persistent")
    outcomes = {}
    for n in (5461, 5462):
        name = f"{data}_{n}"
        coll = harness.client.get_or_create_collection(name, embedding_function=None)
        try:
            coll.upsert(ids=["q"], embeddings=np.ones((1, DIM), np.float32), metadatas=[{"r": list(range(n))}])
            outcomes[n] = len(coll.get(include=["metadatas"])["metadatas"][0]["r"]) == n
        except Exception as exc:  # noqa: BLE001 -- whatever Chroma raises for a record it cannot index
            outcomes[n] = f"{type(exc).__name__}: {exc}"
            with connectors.open_store(harness.uri(data)) as store, \
                    pytest.raises(connectors.ConnectorError, match="delete the collection and write it again"):
                list(store.read_log(name))  # such a log (an older nudge-sync wrote them) is named, with the way out
        finally:
            harness.client.delete_collection(name)  # a broken collection can still be deleted
    assert outcomes[5461] is True
    assert "Failed to apply logs to the metadata segment" in str(outcomes[5462]), outcomes


def test_milvus_limits_just_under_and_just_over(harness, data, log_of):
    if harness.backend != "milvus":
        pytest.skip("Milvus' key and JSON limits")
    # the dynamic fields of an entry(): its relevant ids, timestamp and split
    overhead = len(orjson.dumps({"relevant_ids": [""], "timestamp": T0, "split": "train"}))
    fits = {"key-2048-bytes": ("k" * 2048, ["a"]), "key-682-cjk": ("日" * 682, ["a"]),
            "json-65536": ("j", ["x" * (65_536 - overhead)])}
    assert len(orjson.dumps({"relevant_ids": fits["json-65536"][1], "timestamp": T0, "split": "train"})) == 65_536
    with connectors.open_store(harness.uri(data)) as store:
        for qid, ids in fits.values():
            store.append_log(log_of, [entry(qid, ids)])
        assert {e.query_id for e in store.read_log(log_of)} == {q for q, _ in fits.values()}
        for qid, ids, message in (
                ("k" * 2049, ["a"], r"query_id takes 2,049 bytes .* holds at most 2,048"),
                ("日" * 683, ["a"], r"query_id takes 2,049 bytes"),
                ("j2", [fits["json-65536"][1][0] + "x"], r"fields take 65,537 bytes as JSON .* at most 65,536")):
            with pytest.raises(InvalidEntry, match=message) as exc:
                store.append_log(log_of, [entry("fine", ["a"], seed=2), entry(qid, ids)])
            assert exc.value.index == 1  # the place in the append, for "file line N" messages
        assert {e.query_id for e in store.read_log(log_of)} == {q for q, _ in fits.values()}  # nothing added
    if not harness.version.startswith("milvus_lite"):  # a real server: its own client is refused the same row
        row = {"query_id": "native", "vector": [1.0] * DIM, "relevant_ids": [fits["json-65536"][1][0] + "x"],
               "timestamp": T0, "split": "train"}
        with pytest.raises(Exception, match="65536"):
            harness.client.upsert(log_of, [row])


# -- all or nothing ------------------------------------------------------------------------------------------


class _FailingWrites:
    """Makes the native client's log writes fail from the ``nth`` on (all of them with ``persist``):
    a connection that drops in the middle of an import. The database itself stays real."""

    def __init__(self, monkeypatch, harness, store, log: str, nth: int, persist: bool = False):
        self.calls, self.log, self.nth, self.persist = 0, log, nth, persist
        if harness.backend == "chroma":
            from chromadb.api.models.Collection import Collection

            self._wrap(monkeypatch, Collection, "upsert", lambda args, kwargs: args[0].name)
        else:
            client = store.conn.client if harness.backend == "qdrant" else store.client
            self._wrap(monkeypatch, client, "upsert", lambda args, kwargs: args[0] if args else
                       kwargs.get("collection_name"))

    def _wrap(self, monkeypatch, owner, method: str, target) -> None:
        real = getattr(owner, method)

        def write(*args, **kwargs):
            if target(args, kwargs) == self.log:
                self.calls += 1
                if self.calls == self.nth or (self.persist and self.calls > self.nth):
                    raise ConnectionResetError("injected: the connection dropped mid-import")
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, method, write)


def _entries(harness, names: list[str], seed: int) -> list[LabelledQuery]:
    ids = harness.make_ids(5)
    return [entry(q, [ids[n % 5]], grades=[1.0 + n], seed=seed + n) for n, q in enumerate(names)]


def test_an_append_that_fails_midway_puts_the_log_back(harness, data, log_of, monkeypatch):
    with connectors.open_store(harness.uri(data)) as store:
        store.append_log(log_of, _entries(harness, ["a", "b", "c"], seed=0))
        before = native_log(harness, log_of)
        _FailingWrites(monkeypatch, harness, store, log_of, nth=2)
        # five entries in writes of two: [b', c'] lands, [d, e] fails, [f] never runs
        with pytest.raises(WriteFailed, match=r"injected.*was put back as it was \(2 replaced entries restored, "
                                              r"3 added entries removed\)"):
            store.append_log(log_of, _entries(harness, ["b", "c", "d", "e", "f"], seed=10), batch_size=2)
        monkeypatch.undo()
        assert native_log(harness, log_of) == before
        assert sorted(e.query_id for e in store.read_log(log_of)) == ["a", "b", "c"]


def test_a_failed_first_append_removes_the_log_it_created(harness, data, log_of, monkeypatch):
    with connectors.open_store(harness.uri(data)) as store:
        _FailingWrites(monkeypatch, harness, store, log_of, nth=2)
        with pytest.raises(WriteFailed, match="the log this append created was removed"):
            store.append_log(log_of, _entries(harness, ["a", "b", "c"], seed=0), batch_size=1)
        monkeypatch.undo()
        assert not store.log_exists(log_of)
    assert log_of not in harness.collections()


def test_when_putting_back_fails_too_the_error_says_so(harness, data, log_of, monkeypatch):
    with connectors.open_store(harness.uri(data)) as store:
        store.append_log(log_of, _entries(harness, ["a"], seed=0))
        _FailingWrites(monkeypatch, harness, store, log_of, nth=2, persist=True)
        with pytest.raises(WriteFailed, match=r"putting query log .* back failed as well .* run the same append "
                                              r"again to complete it"):
            store.append_log(log_of, _entries(harness, ["a", "b", "c"], seed=5), batch_size=1)
