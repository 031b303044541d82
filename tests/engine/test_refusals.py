"""Bad input on every real backend: a clear error naming the problem, the documented exit code,
and the user's collection exactly as it was.

The tests share one collection per backend, built once and checked after every test against what
it held before the first (``small``). ``milvus-lite-server`` is left out (tests/conftest.py
``TWIN_HARNESSES``)."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
import nudge_sync
from connectors import LabelledQuery
from nudge_sync import ExitCode, SyncOptions, exit_code_for
from nudge_sync.engine.names import default_state_name
from tests.backends import random_vectors
from tests.conftest import TWIN_HARNESSES, harness_without

harness = harness_without(*TWIN_HARNESSES)

N, DIM = 400, 16


def make_entries(ids, vectors, n_queries=200, seed=3, dim=DIM) -> list[LabelledQuery]:
    """Queries near their one answer, so NUDGE has something to learn; about 20% validation. The
    answers come from 60 popular records, so validation queries share answers with training ones."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n_queries):
        row = int(rng.integers(60))
        vec = vectors[row, :dim] + 0.6 * rng.standard_normal(dim).astype(np.float32)
        out.append(LabelledQuery(f"q{q}", vec.astype(np.float32), [ids[row]], timestamp=1_700_000_000.0 + q,
                                 split="val" if q % 5 == 0 else "train"))
    return out


def _drop_all(harness, prefix: str, keep: str | None = None) -> None:
    for name in harness.collections():
        if name.startswith(prefix) and name != keep:
            harness.drop(name)


@pytest.fixture(scope="module")
def _shared(harness):
    """The module's collection and what it held when built."""
    name = "refusals_" + harness.name.replace("-", "_").replace(".", "_")
    _drop_all(harness, name)
    ids = harness.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    harness.create(name, ids, vectors, metric="cosine", rich=True)
    before = (harness.snapshot(name), harness.vectors(name), harness.count(name))
    yield name, ids, vectors, before
    _drop_all(harness, name)


@pytest.fixture
def small(harness, _shared):
    """(name, ids, vectors) of the shared collection; after the test it must hold exactly what it
    held when built, and whatever the test created beside it is dropped."""
    name, ids, vectors, before = _shared
    yield name, ids, vectors
    _drop_all(harness, name, keep=name)
    after = (harness.snapshot(name), harness.vectors(name), harness.count(name))
    assert after[0] == before[0] and after[2] == before[2]
    assert all(after[1][i].tobytes() == before[1][i].tobytes() for i in before[1]), "the collection was changed"


def refused(harness, store, expected_code, match, **kwargs):
    """The run is refused (or held back) with ``expected_code``, and nothing is created: the list
    of collections is what it was (no state collection, no log collection)."""
    entries = kwargs.pop("entries", None)
    before = sorted(harness.collections())
    with pytest.raises((nudge_sync.NudgeSyncError, connectors.ConnectorError), match=match) as err:
        nudge_sync.sync(store, SyncOptions(**kwargs), entries=entries)
    assert exit_code_for(err.value) == expected_code
    assert sorted(harness.collections()) == before, "a refused run created a collection"
    try:
        name = store.describe().collection
    except connectors.ConnectorError:  # refused by describe itself, before the state is looked at
        return err.value
    assert not store.state(default_state_name(name)).exists()
    return err.value


def test_nudge_m_on_a_cosine_collection_is_refused(harness, small):
    name, ids, vectors = small
    with connectors.open_store(harness.uri(name)) as store:
        refused(harness, store, ExitCode.REFUSED_INPUT, "NUDGE-M .* uses cosine", method="nudge-m",
                entries=make_entries(ids, vectors))


def test_log_with_another_dimension_is_refused(harness, small):
    name, ids, vectors = small
    wide = make_entries(ids, np.hstack([vectors, vectors]), dim=2 * DIM)
    with connectors.open_store(harness.uri(name)) as store:
        refused(harness, store, ExitCode.REFUSED_INPUT, rf"query 'q0' has a vector of shape \({2 * DIM},\).*dimension is {DIM}",
                entries=wide)


def test_nan_query_is_refused(harness, small):
    name, ids, vectors = small
    entries = make_entries(ids, vectors)
    entries[7].vector = entries[7].vector.copy()
    entries[7].vector[3] = np.nan
    with connectors.open_store(harness.uri(name)) as store:
        refused(harness, store, ExitCode.REFUSED_INPUT, "query 'q7' has NaN", entries=entries)


def test_empty_log_is_nothing_to_do(harness, small):
    name, _, _ = small
    with connectors.open_store(harness.uri(name)) as store:
        refused(harness, store, ExitCode.NOTHING_TO_DO, "is empty", entries=[])
        # the log collection itself does not exist yet: also nothing to do, nothing created
        refused(harness, store, ExitCode.NOTHING_TO_DO, "empty|no log|does not exist")


def test_too_few_validation_queries_is_gated(harness, small):
    name, ids, vectors = small
    entries = [e for e in make_entries(ids, vectors) if e.split == "train" or e.query_id in ("q0", "q5")]
    with connectors.open_store(harness.uri(name)) as store:
        err = refused(harness, store, ExitCode.NOTHING_TO_DO, "only 2 validation queries; need at least 10", entries=entries)
        assert err.report.status == "gated" and err.report.counts["val_queries"] == 2


def test_unknown_answer_ids_are_counted_not_fatal(harness, small):
    name, ids, vectors = small
    entries = make_entries(ids, vectors)
    ghost = harness.make_ids(3, offset=10_000)
    for e, g in zip(entries[:3], ghost):
        e.relevant_ids = [g]  # these three queries lose their only answer
    entries[3].relevant_ids = [entries[3].relevant_ids[0], ghost[0]]
    with connectors.open_store(harness.uri(name)) as store:
        report = nudge_sync.sync(store, SyncOptions(dry_run=True), entries=entries)
    assert report.counts["answers_unknown_ids"] == 4
    assert report.counts["queries_without_known_answers"] == 3
    assert report.status == "dry-run" and report.written_ids


def test_missing_collection_is_a_database_error(harness, collection_name):
    with connectors.open_store(harness.uri(collection_name + "_absent")) as store:
        refused(harness, store, ExitCode.DATABASE_ERROR, collection_name + "_absent", entries=[])


def test_auto_id_collection_is_refused(harness, collection_name):
    if not harness.create_auto_id(collection_name, DIM):
        pytest.skip(f"{harness.name} has no auto-generated primary keys")
    try:
        with connectors.open_store(harness.uri(collection_name)) as store:
            refused(harness, store, ExitCode.REFUSED_INPUT, "auto", entries=[])
    finally:
        harness.drop(collection_name)


def test_refused_and_held_back_runs_leave_no_collection_behind(harness, small):
    """Issue 10, defect 6: every refusal and every gate, before or after the state would be
    created, leaves the list of collections exactly as it was (and the collection unchanged: the
    ``small`` fixture checks that)."""
    name, ids, vectors = small
    entries = make_entries(ids, vectors)
    wide = make_entries(ids, np.hstack([vectors, vectors]), dim=2 * DIM)
    cases = [
        ("empty log", {"entries": []}),
        ("no log collection", {}),
        ("unknown objective", {"entries": entries, "objective": "foo@10"}),
        ("NUDGE-M on cosine", {"entries": entries, "method": "nudge-m"}),
        ("log of another dimension", {"entries": wide}),
        ("too few validation queries", {"entries": entries, "min_val_queries": 500}),
        ("not enough new feedback", {"entries": entries, "min_new_feedback": 10_000}),
        ("no gain", {"entries": entries, "min_gain": 1.0}),
        ("too large a share", {"entries": entries, "max_changed_fraction": 0.001}),
    ]
    before = sorted(harness.collections())
    with connectors.open_store(harness.uri(name)) as store:
        for label, kwargs in cases:
            entries_of = kwargs.pop("entries", None)
            with pytest.raises(Exception) as err:
                nudge_sync.sync(store, SyncOptions(**kwargs), entries=entries_of)
            assert exit_code_for(err.value) in (ExitCode.NOTHING_TO_DO, ExitCode.REFUSED_INPUT) or \
                label == "unknown objective", (label, err.value)
            assert sorted(harness.collections()) == before, label
    assert len(cases) == 9
