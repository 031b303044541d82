"""The synthetic generator: deterministic, well-formed, and a problem NUDGE really improves."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_sync import NudgeN, ValidationContext, evaluate, search_exact
from nudge_sync.synthetic import make_corpus


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = (make_corpus(2000, 16, 300, seed=s) for s in (1, 1, 2))
    assert a.vectors.tobytes() == b.vectors.tobytes() and a.queries.tobytes() == b.queries.tobytes()
    assert a.answers == b.answers and a.splits == b.splits
    assert a.vectors.tobytes() != c.vectors.tobytes()


@pytest.mark.parametrize("id_type", ["str", "int"])
def test_shapes_types_and_norms(id_type):
    d = make_corpus(3000, 24, 500, seed=0, id_type=id_type)
    assert d.vectors.shape == (3000, 24) and d.vectors.dtype == np.float32
    assert d.queries.shape == (500, 24) and d.queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d.vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d.queries, axis=1), 1, atol=1e-5)
    assert len(set(d.ids)) == 3000 and all(isinstance(i, int if id_type == "int" else str) for i in d.ids)
    assert all(1 <= len(a) <= 3 and len(set(a)) == len(a) for a in d.answers)
    assert all(len(g) == len(a) for g, a in zip(d.grades, d.answers))
    shares = {s: d.splits.count(s) / 500 for s in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.7, abs=0.06) and shares["test"] == pytest.approx(0.15, abs=0.05)
    assert np.all(np.diff(d.timestamps) > 0)
    entries = d.log_entries(("val",))
    assert len(entries) == d.splits.count("val") and entries[0].relevant_ids[0] in set(d.ids)
    assert len(d.payloads) == len(d.documents) == 3000 and d.payloads[5]["topic"] == int(d.topics[5])


def test_popular_records_make_held_out_queries_share_answers_with_training():
    d = make_corpus(5000, 32, 1500, seed=0)
    trained = {r for q in d.rows("train") for r in d.answers[q]}
    test_answers = [r for q in d.rows("test") for r in d.answers[q]]
    assert np.mean([r in trained for r in test_answers]) > 0.5


def test_nudge_measurably_helps_held_out_queries():
    d = make_corpus(5000, 64, 1500, seed=0)
    X, tr, va, te = d.vectors, d.rows("train"), d.rows("val"), d.rows("test")
    base = np.unique(d.answers_of("train").ids)
    ctx = ValidationContext.from_corpus(d.queries[va], X, 20, exclude=base)
    est = NudgeN(gamma_search="fine", objective="ndcg@10").fit(
        X[base], d.queries[tr], d.answers_of("train"), d.queries[va], d.answers_of("val"),
        base_ids=base, val_context=ctx)

    def ndcg(Y):
        ids, _ = search_exact(d.queries[te], Y, 10)
        return evaluate(ids, d.answers_of("test"), "ndcg@10")["ndcg@10"]

    before, after = ndcg(X), ndcg(est.transform(X))
    assert 0.15 < before < 0.8  # a real gap: plain search misses many answers
    assert after - before > 0.10


def test_bad_arguments():
    with pytest.raises(ValueError, match="id_type"):
        make_corpus(10, 4, 5, id_type="uuid")
    with pytest.raises(ValueError, match="at least"):
        make_corpus(1, 4, 5)
