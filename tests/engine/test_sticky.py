"""The γ in force (``nudge_sync.engine.sticky``): which run's γ the stored vectors carry, and a
repeated search-mode run on the in-memory store (an exact kNN) writing nothing."""

from __future__ import annotations

import numpy as np
import pytest

import nudge_sync
from connectors import open_store
from nudge_sync.engine.errors import RefusedInput
from nudge_sync.engine.options import SyncOptions, SyncReport
from nudge_sync.engine.sticky import gamma_in_force, keep_gamma_in_force
from tests.engine.test_refusals import make_entries
from tests.backends import random_vectors


def run(status: str, gamma: float | None, method: str = "nudge-n") -> dict:
    return {"run_id": status, "status": status, "method": method, "gamma": gamma}


@pytest.mark.parametrize("runs, expected", [
    ([], None),
    ([run("written", 0.3)], 0.3),
    ([run("written", 0.3), run("unchanged", 0.3), run("gated", 0.5)], 0.3),  # a gated run wrote nothing
    ([run("written", 0.3), run("undone", 0.7)], 0.3),  # an undone run put back what it wrote
    ([run("written", 0.3), run("partial", 0.7)], 0.7),  # a partial run left some of its targets
    ([run("written", 0.3), {"run_id": "r", "status": "rolled-back", "restored": 5}], None),
    ([run("written", 0.3), {"run_id": "r", "status": "unchanged", "restored": 0}], 0.3),  # rollback of nothing
    ([run("written", 0.3, "nudge-m")], None),  # another method's γ lives on another scale
    ([run("written", None)], None),
])
def test_gamma_in_force(runs, expected):
    assert gamma_in_force(runs, "nudge-n") == expected


@pytest.mark.parametrize("bad", [-0.01, 1.5, float("nan"), "0.1", True])
def test_gamma_margin_is_checked(bad):
    with pytest.raises(RefusedInput, match="gamma_margin"):
        SyncOptions(gamma_margin=bad).validate()


def test_repeated_search_run_on_the_memory_store_writes_nothing(harness_memory, collection_name):
    ids = harness_memory.make_ids(300)
    vectors = random_vectors(300, 16, seed=5, normalize=True)
    harness_memory.create(collection_name, ids, vectors, metric="cosine", rich=True)
    entries = make_entries(ids, vectors)
    store = open_store(harness_memory.uri(collection_name))
    first = nudge_sync.sync(store, SyncOptions(context="search"), entries=entries)
    assert first.status == "written" and first.counts["written"] > 0
    after_first = harness_memory.vectors(collection_name)
    second = nudge_sync.sync(store, SyncOptions(context="search", force=True), entries=entries)  # plans in full
    assert second.status == "unchanged" and second.counts["written"] == 0
    assert second.gamma == first.gamma and second.notes == []
    after_second = harness_memory.vectors(collection_name)
    assert all(after_second[i].tobytes() == after_first[i].tobytes() for i in ids)
    for name in harness_memory.collections():  # the memory store lives as long as the test process
        if name.startswith(collection_name):
            harness_memory.drop(name)


class Fit:
    """What the sticky rule reads of a fitted estimator."""

    def __init__(self, gamma: float, score: float):
        self.gamma_, self.val_score_, self.objective_ = gamma, score, "ndcg@10"
        self.gammas_, self.validation_curve_ = np.array([gamma]), np.array([score])


@pytest.mark.parametrize("mode, fixed, new_score, kept", [
    ("search", None, 0.504, True),  # gain 0.004: not above the default margin 0.01
    ("search", None, 0.512, False),  # gain 0.012: the new γ wins
    ("exact", None, 0.504, False),  # exact mode: the context never moves, nothing to keep
    ("search", 0.2, 0.504, False),  # a fixed γ is the user's
])
def test_the_last_runs_gamma_stays_unless_beaten_by_more_than_the_margin(mode, fixed, new_score, kept):
    opts = SyncOptions(gamma=fixed)
    report = SyncReport(run_id="r", status="", store="s", collection="c", method="nudge-n", started=0.0,
                        objective="ndcg@10", context_mode=mode)
    new = Fit(0.41, new_score)
    refits: list[float] = []

    def refit(gamma: float) -> Fit:
        refits.append(gamma)
        return Fit(gamma, 0.5)

    chosen = keep_gamma_in_force(new, refit, lambda: [run("written", 0.40)], opts, report)
    assert (chosen is not new) == kept
    if kept:
        assert chosen.gamma_ == 0.40 and refits == [0.40]
        assert "kept the last run's γ=0.4" in report.notes[0] and "+0.0040" in report.notes[0]
        assert list(chosen.gammas_) == [0.41, 0.40]  # the search's curve, with the kept point
    elif mode == "search" and fixed is None:
        assert "γ changed" in report.notes[0] and "+0.0120" in report.notes[0]
    else:
        assert refits == [] and report.notes == []
