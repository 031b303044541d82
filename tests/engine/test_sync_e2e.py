"""End to end at SciFact scale (5,183 x 384): loaded with the native client, synced through
``nudge_sync.sync``, and every claim checked at the database with the native client again.

tests/user/test_sequences.py proves the command sequence (plan writes nothing, run writes exactly
what changed, a second run writes nothing, rollback restores, payloads untouched) on all six
backends as separate processes, on a small collection. What only this file proves: the gain read
back from the database is the core's gain on plain arrays, the search context agrees with the
exact one on real ANN indexes, nightly runs do not compound, and rollback's bit-exact share on a
real corpus. One harness per connector and index (the Chroma and Milvus Lite servers run the same
connector code and engine as Chroma persistent and Milvus Lite); the in-memory store is cheap.
"""

from __future__ import annotations

import numpy as np
import pytest

import connectors
import nudge_sync
from nudge_sync import NudgeN, SyncOptions, ValidationContext, evaluate, search_exact
from nudge_sync.engine.names import default_log_name
from tests.conftest import selected_harnesses
from tests.engine._scifact import SciFact, load

#: One float32 ulp at 1.0: what a database that re-normalises cosine vectors may move.
ULP = 2.0**-23


def harnesses(*names: str) -> pytest.MarkDecorator:
    """Run on these harnesses only (those of them selected)."""
    return pytest.mark.parametrize("harness", [n for n in names if n in selected_harnesses()], indirect=True)


#: one per connector, plus the real Milvus 2.3.5 (full-row writes, its own index and consistency)
E2E = harnesses("qdrant-local", "milvus-lite", "milvus-2.3.5", "chroma-persistent", "memory")


@pytest.fixture(scope="session")
def scifact_by_id_type(scifact_path):
    cache: dict[str, SciFact] = {}

    def get(id_type: str) -> SciFact:
        if id_type not in cache:
            cache[id_type] = load(scifact_path, id_type)
        return cache[id_type]

    return get


@pytest.fixture(scope="session")
def core_expectation(scifact_by_id_type):
    """The core on plain arrays, as the engine runs it: test NDCG@10 before and after."""
    sf = scifact_by_id_type("str")
    X = sf.vectors
    base = np.unique(sf.answers["train"].ids)
    ctx = ValidationContext.from_corpus(sf.queries["dev"], X, SyncOptions().context_k, exclude=base)
    est = NudgeN(gamma_search="fine", objective="ndcg@10").fit(
        X[base], sf.queries["train"], sf.answers["train"], sf.queries["dev"], sf.answers["dev"],
        base_ids=base, val_context=ctx)

    def ndcg(Y):
        ids, _ = search_exact(sf.queries["test"], Y, 10)
        return evaluate(ids, sf.answers["test"], ["ndcg@10"])["ndcg@10"]

    return {"gamma": est.gamma_, "before": ndcg(X), "after": ndcg(est.transform(X))}


def load_scifact(harness, name: str, sf: SciFact, metric: str) -> None:
    harness.create(name, sf.ids, sf.vectors, metric=metric, rich=True)
    with connectors.open_store(harness.uri(name)) as store:
        store.append_log(default_log_name(name), sf.entries)


def changed_ids(before: dict, after: dict) -> set:
    return {i for i in before if before[i].tobytes() != after[i].tobytes()}


@E2E
def test_sync_improves_the_collection_and_touches_nothing_else(harness, collection_name, scifact_by_id_type,
                                                                core_expectation):
    """On a cosine collection, the case where Qdrant and Chroma re-normalise what they store; dot
    collections come back bit for bit in the nightly test below (and in tests/user)."""
    metric = "cosine"
    sf = scifact_by_id_type(harness.id_types[0])
    load_scifact(harness, collection_name, sf, metric)
    snapshot0, vectors0, count0 = harness.snapshot(collection_name), harness.vectors(collection_name), \
        harness.count(collection_name)
    collections0 = set(harness.collections())
    try:
        with connectors.open_store(harness.uri(collection_name)) as store:
            # --dry-run: computes everything, writes nothing (not even the state collection)
            plan = nudge_sync.sync(store, SyncOptions(dry_run=True))
            assert plan.status == "dry-run" and len(plan.written_ids) > 400
            assert set(harness.collections()) == collections0
            assert not changed_ids(vectors0, harness.vectors(collection_name))

            report = nudge_sync.sync(store, SyncOptions())
            assert report.status == "written"
            assert report.gamma == pytest.approx(core_expectation["gamma"], abs=1e-6)
            written = set(report.written_ids)
            assert written == set(plan.written_ids)
            vectors1 = harness.vectors(collection_name)
            # only records with changed vectors were written, counted at the database
            assert changed_ids(vectors0, vectors1) == written
            assert report.counts["written"] == len(written)
            assert harness.snapshot(collection_name) == snapshot0
            assert harness.count(collection_name) == count0

            # the gain, read back from the database, is the core's gain on arrays
            ev = nudge_sync.evaluate_store(store, sf.entries, split="test")
            assert ev["original"]["ndcg@10"] == pytest.approx(core_expectation["before"], abs=1e-4)
            assert ev["current"]["ndcg@10"] == pytest.approx(core_expectation["after"], abs=0.005)
            assert ev["current"]["ndcg@10"] - ev["original"]["ndcg@10"] > 0.12

            # runs start from the originals: a second run has nothing to write (forced past the
            # nothing_new gate, so that it plans in full)
            again = nudge_sync.sync(store, SyncOptions(force=True))
            assert again.status == "unchanged" and again.counts["written"] == 0
            assert not changed_ids(vectors1, harness.vectors(collection_name))

            undone = nudge_sync.rollback(store)
            assert undone["restored"] == len(written)
            vectors2 = harness.vectors(collection_name)
            if harness.backend == "milvus":  # stores what it is sent, whatever the metric
                assert not changed_ids(vectors0, vectors2), "rollback must restore every vector bit for bit"
                assert undone["bit_exact"] == len(written)
            else:
                # Qdrant and Chroma re-normalise cosine vectors in float32 on every write: a few
                # originals have no float32 pre-image and come back within one ulp (README: rollback)
                worst = max(float(np.max(np.abs(vectors0[i] - vectors2[i]))) for i in vectors0)
                assert worst <= ULP
                assert undone["bit_exact"] >= 0.98 * len(written)
            assert harness.snapshot(collection_name) == snapshot0
            assert nudge_sync.status(store)["nudged"] == 0
            assert [r["status"] for r in nudge_sync.history(store)][-3:] == ["written", "unchanged", "rolled-back"]
    finally:
        for name in set(harness.collections()) - collections0 | {collection_name}:
            harness.drop(name)


class Calls:
    """Counts what the run asks of the store's public interface: rows streamed, kNN queries."""

    def __init__(self, store, monkeypatch):
        self.streamed, self.searched = 0, 0
        stream, search = store.iter_vectors, store.search

        def iter_vectors(*args, **kwargs):
            for ids, vectors in stream(*args, **kwargs):
                self.streamed += len(ids)
                yield ids, vectors

        def counted_search(queries, *args, **kwargs):
            self.searched += len(queries)
            return search(queries, *args, **kwargs)

        monkeypatch.setattr(store, "iter_vectors", iter_vectors)
        monkeypatch.setattr(store, "search", counted_search)


@E2E
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_search_and_exact_context_choose_the_same_gamma(harness, collection_name, scifact_by_id_type, metric,
                                                        monkeypatch):
    """``exact`` streams the whole collection and asks no kNN; ``search`` asks the database's kNN
    for every validation query and streams nothing (O(labels), not O(corpus)); both pick the same
    gamma and records on real indexes."""
    sf = scifact_by_id_type(harness.id_types[0])
    load_scifact(harness, collection_name, sf, metric)
    try:
        with connectors.open_store(harness.uri(collection_name)) as store:
            calls = Calls(store, monkeypatch)
            exact = nudge_sync.sync(store, SyncOptions(context="exact", dry_run=True))
            exact_calls, calls.streamed, calls.searched = (calls.streamed, calls.searched), 0, 0
            search = nudge_sync.sync(store, SyncOptions(context="search", dry_run=True))
            search_calls = (calls.streamed, calls.searched)
        assert exact.context_mode == "exact" and search.context_mode == "search"
        assert exact_calls[0] >= len(sf.ids) and exact_calls[1] == 0, exact_calls
        assert search_calls[0] == 0 and search_calls[1] >= search.counts["val_queries"] > 0, search_calls
        # ANN search may miss a neighbour; on 5k records every backend here is exact enough that
        # the chosen gamma agrees far inside one parity grid step (0.02)
        assert search.gamma == pytest.approx(exact.gamma, abs=0.02)
        assert search.validation["after"]["ndcg@10"] == pytest.approx(exact.validation["after"]["ndcg@10"], abs=0.01)
        assert set(search.written_ids) == set(exact.written_ids)
    finally:
        harness.drop(collection_name)


@harnesses("qdrant-local", "milvus-lite", "chroma-persistent", "memory")
def test_nightly_batches_equal_one_run_and_removed_labels_are_restored(harness, collection_name, scifact_by_id_type):
    """Three nights of feedback give the vectors one run on all of it gives (updates never compound:
    each run starts from the originals the state saved); withdrawn labels put originals back; on
    this dot collection every rollback is bit for bit."""
    sf = scifact_by_id_type(harness.id_types[0])
    harness.create(collection_name, sf.ids, sf.vectors, metric="dot", rich=False)
    vectors0 = harness.vectors(collection_name)
    feedback = sf.entries_of("train", "dev")
    # three nights; each brings a third of the train and validation queries (interleaved)
    thirds = [[e for n, e in enumerate(feedback) if n % 3 <= night] for night in range(3)]
    try:
        with connectors.open_store(harness.uri(collection_name)) as store:
            for batch in thirds:
                report = nudge_sync.sync(store, SyncOptions(), entries=batch)
                assert report.status == "written"
            nightly = harness.vectors(collection_name)

            # a single run on all feedback, from the originals, gives the same vectors: no compounding
            nudge_sync.rollback(store)
            assert not changed_ids(vectors0, harness.vectors(collection_name))
            single = nudge_sync.sync(store, SyncOptions(), entries=feedback)
            assert not changed_ids(nightly, harness.vectors(collection_name))
            assert set(single.written_ids) == changed_ids(vectors0, nightly)

            # users withdraw labels: records no training query answers any more go back to originals
            train = [e for e in feedback if e.split == "train"]
            withdrawn = train[:40]
            still = {i for e in feedback if e not in withdrawn and e.split == "train" for i in e.relevant_ids}
            orphaned = {i for e in withdrawn for i in e.relevant_ids} - still
            assert orphaned
            after = nudge_sync.sync(store, SyncOptions(), entries=[e for e in feedback if e not in withdrawn])
            assert after.counts["to_restore"] == len(orphaned)
            vectors3 = harness.vectors(collection_name)
            for i in orphaned:
                assert vectors3[i].tobytes() == vectors0[i].tobytes()
            assert nudge_sync.status(store)["nudged"] == len(still)
    finally:
        harness.drop(collection_name)
        harness.drop(f"{collection_name}_nudge_state")
