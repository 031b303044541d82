"""A repeated search-mode run writes nothing (issue 20, item 0), as users meet it: `nudge-sync run
--context search` twice, as separate processes, read back with the database's own client.

On Chroma the collection's HNSW index is made truly approximate (few links, a small search beam)
and the answers compete with the whole collection (random records, queries from one side of 400
popular ones), so the database's kNN for the validation queries moves once the first run has
rewritten the popular records. Without the sticky γ (``nudge_sync.engine.sticky``) the second run
then picks another γ and rewrites every nudged record (measured on this shape: 3 of 3 collections,
all 400 records again; bench/results/sticky.md); with it, the second run finds every target
already stored. Qdrant's local mode
searches exactly: there the context does not move at all and the second run writes nothing either.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import connectors
from connectors import LabelledQuery
from tests.user._data import make_collection
from tests.user._native import ChromaPersistentBackend, embedded_backend
from tests.user._runner import nudge

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: records x dimension, labelled queries and the popular records they ask for (the measured shape)
RECORDS, DIM, QUERIES, POPULAR = 10_000, 32, 4_000, 400
#: an index that really is approximate: 4 links per node, beams of 10 when building and searching
HNSW = {"space": "cosine", "max_neighbors": 4, "ef_construction": 10, "ef_search": 10}


def _approximate_collection(backend: ChromaPersistentBackend, name: str, directory: Path) -> tuple[Path, list[str]]:
    """``name`` with an approximate HNSW index, created with chromadb itself; its log as a file."""
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((RECORDS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"doc-{i}" for i in range(RECORDS)]
    with backend.native() as h:
        coll = h.client.create_collection(name, configuration={"hnsw": HNSW}, embedding_function=None)
        for s in range(0, RECORDS, 5000):
            coll.add(ids=ids[s:s + 5000], embeddings=vectors[s:s + 5000],
                     metadatas=[{"n": i} for i in range(s, min(RECORDS, s + 5000))])
    # each popular record is asked for from one side (a query-document gap for NUDGE to close)
    shift = rng.standard_normal((POPULAR, DIM)).astype(np.float32)
    shift /= np.linalg.norm(shift, axis=1, keepdims=True)
    entries = []
    for q in range(QUERIES):
        row = int(rng.integers(POPULAR))
        query = vectors[row] + 0.6 * shift[row] + 1.6 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
        entries.append(LabelledQuery(f"q{q}", query.astype(np.float32), [ids[row]], timestamp=1.7e9 + q,
                                     split="val" if q % 5 == 0 else "train"))
    log = directory / "clicks.jsonl"
    connectors.write_log_file(log, entries)
    return log, ids


def _metadata(backend: ChromaPersistentBackend, name: str) -> list[object]:
    with backend.native() as h:
        got = h.client.get_collection(name, embedding_function=None).get(include=["metadatas"])
    return sorted(zip(got["ids"], [m["n"] for m in got["metadatas"]]))


def test_search_mode_run_twice_on_an_approximate_chroma_index_writes_nothing_the_second_time(tmp_path):
    backend = embedded_backend("chroma-persistent", tmp_path / "db")
    assert isinstance(backend, ChromaPersistentBackend)
    name = "approx"
    log, ids = _approximate_collection(backend, name, tmp_path)
    uri = backend.uri(name)
    args = ("run", "--store", uri, "--log-file", log, "--context", "search")

    first = nudge(*args).report
    assert first["status"] == "written" and first["context_mode"] == "search", first
    assert 0 < first["counts"]["written"] <= POPULAR
    after_first = backend.vectors(name)
    metadata = _metadata(backend, name)

    second = nudge(*args, "--force").report  # nothing new: --force plans in full, from a new kNN context
    # the database's kNN really moved: the same validation queries met another context
    assert second["validation"]["before"] != first["validation"]["before"], (first["validation"], second["validation"])
    assert second["status"] == "unchanged" and second["counts"]["written"] == 0, second
    assert second["gamma"] == first["gamma"], (first["gamma"], second["gamma"], second["notes"])
    after_second = backend.vectors(name)
    assert sorted(after_second) == sorted(ids)
    changed = [i for i in ids if after_second[i].tobytes() != after_first[i].tobytes()]
    assert changed == [], f"the second run rewrote {len(changed)} vectors"
    assert _metadata(backend, name) == metadata


def test_search_mode_run_twice_on_qdrant_local_writes_nothing_the_second_time(tmp_path):
    backend = embedded_backend("qdrant-local", tmp_path / "db")
    coll = make_collection(backend, "exactknn", tmp_path)
    args = ("run", "--store", coll.uri, "--context", "search")
    first = nudge(*args).report
    assert first["status"] == "written" and first["counts"]["written"] > 0, first
    after_first = backend.vectors(coll.name)
    second = nudge(*args, "--force").report  # nothing new: --force plans in full
    assert second["status"] == "unchanged" and second["counts"]["written"] == 0, second
    # an exact kNN: the same context and γ (up to its float32 scores' last bits), no note about keeping it
    assert second["validation"]["before"] == first["validation"]["before"]
    assert math.isclose(second["gamma"], first["gamma"], rel_tol=1e-7), (first["gamma"], second["gamma"])
    assert not any("γ" in n for n in second["notes"]), second["notes"]
    after_second = backend.vectors(coll.name)
    assert all(after_second[i].tobytes() == after_first[i].tobytes() for i in coll.ids)


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan"])
def test_gamma_margin_out_of_range_is_refused_before_anything_is_read(tmp_path, bad):
    result = nudge("run", "--store", f"chroma://{tmp_path / 'none'}?collection=docs", "--gamma-margin", bad,
                   expect=2, as_json=False)
    assert "--gamma-margin" in result.stderr, result.describe()
    assert not (tmp_path / "none").exists()
