"""Every read path on a collection another process created, wrote and closed (defect 1 of issue 10).

A separate Python process creates a collection, its query log and its state collection through
``connectors`` and exits. This process then opens them fresh and reads them every way nudge-sync
does. Milvus Lite releases every collection when its process ends, and a Milvus server may release
a collection at any time (the second test releases them under a store's feet), so the store must
load a collection before its first read and again when it finds it released.
Embedded databases get a location of their own (another process holding the harness' directory
would lock this one out); servers are the harness' own. The first test leaves ``milvus-lite-server``
out (tests/conftest.py ``TWIN_HARNESSES``); the second runs on the Milvus Lite engine, embedded and
as a server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import connectors
import nudge_sync
from connectors import StateRecord
from tests.conftest import TWIN_HARNESSES, fixture_name, harness_without, selected_harnesses

harness = harness_without(*TWIN_HARNESSES)

N, DIM = 60, 8

#: Run in another process: create the collection, fill its log and state, and exit.
WRITER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import connectors
    from connectors import LabelledQuery, StateRecord
    uri, ids = sys.argv[1], json.loads(sys.argv[2])
    vectors = np.random.default_rng(11).standard_normal((len(ids), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    connectors.create_collection(uri, ids, vectors, metric="cosine")
    with connectors.open_store(uri) as store:
        name = store.describe().collection
        store.append_log(name + "_feedback", [LabelledQuery(f"q{j}", vectors[j], [ids[j]], timestamp=1.7e9 + j)
                                               for j in range(10)])
        state = store.state(name + "_nudge_state")
        state.create(8)
        state.put("original", [StateRecord(f"k{j}", vectors[j], {"id": ids[j], "fp": None, "nudged": False,
                                                                   "run": None}) for j in range(5)])
        state.put("run", [StateRecord("r1", None, {"run_id": "r1", "status": "written", "started": 1.0})])
""")


def fresh_uri(harness, name: str, tmp_path) -> str:
    if harness.is_server:
        return harness.uri(name)
    location = {"qdrant": tmp_path / "qdrant", "milvus": tmp_path / "fresh.db", "chroma": tmp_path / "chroma"}
    return f"{harness.backend}://{location[harness.backend]}?collection={name}"


def test_every_read_path_works_on_a_collection_another_process_wrote(harness, collection_name, tmp_path):
    ids = harness.make_ids(N)
    uri = fresh_uri(harness, collection_name, tmp_path)
    if harness.backend == "qdrant":
        (tmp_path / "qdrant").mkdir()
    done = subprocess.run([sys.executable, "-c", WRITER, uri, json.dumps(ids)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    try:
        expected = np.random.default_rng(11).standard_normal((N, DIM)).astype(np.float32)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        with connectors.open_store(uri) as store:
            name = store.describe().collection
            state = store.state(f"{name}_nudge_state")
            # the state first: the collection the defect hit (it is read before anything else)
            assert state.exists()
            originals = [r for batch in state.scan("original") for r in batch]
            assert sorted(r.key for r in originals) == [f"k{j}" for j in range(5)]
            assert [r.meta["run_id"] for r in state.get("run", ["r1"])] == ["r1"]
            assert store.describe().count == N
            got = {i: v for batch_ids, vecs in store.iter_vectors(batch_size=25) for i, v in zip(batch_ids, vecs)}
            assert sorted(got, key=str) == sorted(ids, key=str)
            found, vecs, missing = store.get_vectors(ids[:7])
            assert found == ids[:7] and not missing
            assert np.allclose(vecs, expected[:7], atol=1e-6)
            hits = store.search(expected[:3], 2, exclude=[ids[0]])
            assert hits.ids[1][0] == ids[1] and ids[0] not in hits.ids[0]
            assert store.log_exists(f"{name}_feedback")
            assert sorted(e.query_id for e in store.read_log(f"{name}_feedback")) == sorted(f"q{j}" for j in range(10))
            summary = nudge_sync.status(store)
            assert summary["runs"] == 1 and summary["originals_kept"] == 5
            assert [r["run_id"] for r in nudge_sync.history(store)] == ["r1"]
            state.put("run", [StateRecord("r2", None, {"run_id": "r2", "status": "unchanged", "started": 2.0})])
            assert len(nudge_sync.history(store)) == 2
    finally:
        if harness.is_server:
            for coll in (collection_name, f"{collection_name}_feedback", f"{collection_name}_nudge_state"):
                harness.drop(coll)


# Only Milvus loads and releases collections. Not on milvus-2.3.5: the same code path as
# milvus-lite-server (a real server process too), and each load takes seconds there.
@pytest.mark.parametrize("milvus_name", [n for n in ("milvus-lite", "milvus-lite-server") if n in selected_harnesses()])
def test_a_milvus_collection_released_while_a_store_reads_it_is_loaded_again(request, milvus_name, collection_name):
    pytest.importorskip("pymilvus")
    harness = request.getfixturevalue(fixture_name(milvus_name))
    ids = harness.make_ids(N)
    vectors = np.random.default_rng(3).standard_normal((N, DIM)).astype(np.float32)
    harness.create(collection_name, ids, vectors, metric="l2", rich=False)
    try:
        with connectors.open_store(harness.uri(collection_name)) as store:
            state = store.state(f"{collection_name}_nudge_state")
            state.create(DIM)
            state.put("run", [StateRecord("r1", None, {"run_id": "r1"})])
            assert store.get_vectors(ids[:2])[0] == ids[:2]  # loaded, and the store knows it
            for coll in (collection_name, state.name):
                harness.client.release_collection(coll)
            assert store.get_vectors(ids[:2])[0] == ids[:2]
            assert store.search(vectors[:1], 1).ids[0] == [ids[0]]
            assert [r.key for r in state.get("run", ["r1"])] == ["r1"]
    finally:
        harness.drop(collection_name)
        harness.drop(f"{collection_name}_nudge_state")
