import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge_sync.core.answers import Answers
from nudge_sync.core.metrics import evaluate, evaluate_per_query, merge_topk, parse_metric, rank, search_exact


def test_parse_metric():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric(" NDCG @ 5 ") == ("ndcg", 5)
    assert parse_metric("r@20") == ("recall", 20)
    assert parse_metric("success@1") == ("hit", 1)
    for bad in ("ndcg", "foo@10", "ndcg@0", "ndcg@x", 10):
        with pytest.raises(ValueError):
            parse_metric(bad)


def test_hand_computed_metrics():
    ranked = np.array([[5, 1, 7, -1], [2, 3, 4, 8]])
    ans = Answers.from_lists([[1, 7, 9], [8]], [[3.0, 1.0, 2.0], [2.0]])
    got = evaluate_per_query(ranked, ans, ["recall@3", "recall@2", "hit@1", "hit@2", "mrr@3", "ndcg@3", "recall@4", "mrr@4"])
    assert got["recall@3"].tolist() == [2 / 3, 0.0]
    assert got["recall@2"].tolist() == [1 / 2, 0.0]  # capped: min(|A|, k) = 2
    assert got["hit@1"].tolist() == [0.0, 0.0]
    assert got["hit@2"].tolist() == [1.0, 0.0]
    assert got["mrr@3"].tolist() == [0.5, 0.0]
    assert got["mrr@4"].tolist() == [0.5, 0.25]
    assert got["recall@4"].tolist() == [2 / 3, 1.0]
    dcg = 3 / math.log2(3) + 1 / math.log2(4)
    idcg = 3 / 1 + 2 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@3"][0] == pytest.approx(dcg / idcg, abs=1e-15)
    assert got["ndcg@3"][1] == 0.0
    means = evaluate(ranked, ans, ["recall@4", "ndcg@3"])
    assert means["recall@4"] == pytest.approx((2 / 3 + 1) / 2)


def test_ndcg_ideal_uses_all_answers_and_linear_gain():
    # one relevant (grade 2) retrieved at rank 2, another (grade 4) never retrieved
    got = evaluate(np.array([[0, 1]]), Answers.from_lists([[1, 9]], [[2.0, 4.0]]), ["ndcg@2"])["ndcg@2"]
    assert got == pytest.approx((2 / math.log2(3)) / (4 + 2 / math.log2(3)))


def test_queries_without_answers_are_nan_and_left_out_of_the_mean():
    ranked = np.array([[1, 2], [1, 2]])
    ans = Answers.from_lists([[1], []])
    per = evaluate_per_query(ranked, ans, "hit@1")["hit@1"]
    assert per[0] == 1.0 and np.isnan(per[1])
    assert evaluate(ranked, ans, "hit@1") == {"hit@1": 1.0}
    assert math.isnan(evaluate(ranked[1:], Answers.from_lists([[]]), ["hit@1"])["hit@1"])


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="n_queries=2"):
        evaluate(np.zeros((3, 2), dtype=np.int64), [[1], [2]], ["hit@1"])


def test_rank_ties_break_by_id_and_pads():
    ids, s = rank(np.array([[1.0, 2.0, 2.0, 0.0]]), np.array([10, 7, 3, 1]), 3)
    assert ids.tolist() == [[3, 7, 10]]
    assert s.tolist() == [[2.0, 2.0, 1.0]]
    ids, s = rank(np.array([[0.5, -np.inf, 0.1]]), np.array([4, -1, 2]), 5)
    assert ids.tolist() == [[4, 2, -1, -1, -1]]
    assert s[0, :2].tolist() == [0.5, 0.1] and np.all(np.isneginf(s[0, 2:]))
    # many ties at the k-th score take the smallest ids
    ids, _ = rank(np.array([[1.0, 0.0, 0.0, 0.0, 0.0]]), np.array([9, 8, 6, 7, 5]), 3)
    assert ids.tolist() == [[9, 5, 6]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 12), st.integers(1, 15), st.integers(0, 10**6))
def test_rank_matches_a_sort_by_score_then_id(nq, n, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-2, 3, size=(nq, n)).astype(float)  # many ties
    ids = rng.permutation(1000)[:n]
    got, got_s = rank(scores, ids, k)
    for r in range(nq):
        want = sorted(range(n), key=lambda c: (-scores[r, c], ids[c]))[:k]
        assert got[r, : len(want)].tolist() == [int(ids[c]) for c in want]
        assert got_s[r, : len(want)].tolist() == [scores[r, c] for c in want]
        assert np.all(got[r, len(want):] == -1)


def test_merge_topk_dedupes():
    a_ids, a_s = np.array([[1, 2]]), np.array([[0.9, 0.5]])
    b_ids, b_s = np.array([[2, 3]]), np.array([[0.5, 0.7]])
    ids, s = merge_topk(a_ids, a_s, b_ids, b_s, 3, dedupe=True)
    assert ids.tolist() == [[1, 3, 2]] and s.tolist() == [[0.9, 0.7, 0.5]]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 12), st.integers(1, 9), st.integers(0, 10**6))
def test_search_exact_matches_brute_force(nq, n, k, block, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(nq, 5))
    x = rng.normal(size=(n, 5))
    ids = rng.permutation(10 * n)[:n]
    got, got_s = search_exact(q, x, k, ids=ids, block_size=block)
    want, want_s = rank(q @ x.T, ids, k)
    assert np.array_equal(got, want)
    np.testing.assert_allclose(got_s, want_s, rtol=0, atol=1e-12)
    # the same from an iterable of (ids, vectors) blocks
    blocks = ((ids[i : i + block], x[i : i + block]) for i in range(0, n, block))
    got2, _ = search_exact(q, blocks, k)
    assert np.array_equal(got2, want)


def test_search_exact_rejects_bad_input():
    with pytest.raises(ValueError, match="dimension 3"):
        search_exact(np.zeros((1, 2)), np.zeros((4, 3)), 1)
    with pytest.raises(ValueError, match="non-finite.*row 2"):
        search_exact(np.zeros((1, 2)), np.array([[0, 0], [1, 1], [np.nan, 0]]), 1)
