"""The query log as a run sees it: validation, de-duplication, the stable hash split."""

from __future__ import annotations

import numpy as np
import pytest

from connectors import LabelledQuery
from nudge_sync.engine.errors import NothingToDo, RefusedInput
from nudge_sync.engine.feedback import hash_split, prepare_feedback


def entry(qid, ids, *, dim=4, grades=None, ts=None, split=None, vec=None):
    v = np.arange(1, dim + 1, dtype=np.float32) if vec is None else np.asarray(vec, dtype=np.float32)
    return LabelledQuery(qid, v, list(ids), grades, ts, split)


def test_hash_split_is_stable_and_close_to_the_fraction():
    ids = [f"q{i}" for i in range(20_000)]
    first = [hash_split(q, 0.2) for q in ids]
    assert first == [hash_split(q, 0.2) for q in ids]
    share = first.count("val") / len(ids)
    assert 0.19 < share < 0.21
    # a query never changes side when others arrive or leave, and the salt reshuffles
    assert hash_split("q17", 0.2) == first[17]
    salted = [hash_split(q, 0.2, salt="s") for q in ids]
    assert salted != first
    # growing the fraction only moves queries from train to val
    assert all(hash_split(q, 0.3) == "val" for q, s in zip(ids, first) if s == "val")


T0 = 1_700_000_000.0  # timestamps are unix seconds from 2000 on (the entry rule)


def test_prepare_normalises_dedupes_and_counts():
    fb = prepare_feedback(
        [entry("b", [1, 2], ts=T0 + 1), entry("a", [3]), entry("b", [2], ts=T0 + 5, split="test"),
         entry("d", [7, 7, 8], grades=[2.0, 3.0, 1.0], split="val")],
        4,
    )
    assert fb.query_ids == ["a", "b", "d"]
    assert fb.answers == [[3], [2], [7, 8]]
    assert fb.grades == [[1.0], [1.0], [2.0, 1.0]]  # a repeated answer keeps its first grade
    assert fb.splits[1:] == ["test", "val"]
    np.testing.assert_allclose(np.linalg.norm(fb.vectors, axis=1), 1.0, rtol=1e-6)
    assert fb.watermark == T0 + 5
    assert fb.counts == {"log_entries": 4, "queries": 3, "duplicate_query_ids": 1, "new_since_watermark": 3}


def test_new_since_watermark_counts_only_newer_entries():
    fb = prepare_feedback([entry("a", [1], ts=T0 + 1), entry("b", [1], ts=T0 + 3), entry("c", [1])], 4,
                          since=T0 + 2)
    assert fb.counts["new_since_watermark"] == 1


def test_drop_ids_removes_answers_and_empty_queries():
    fb = prepare_feedback([entry("a", [1, 2], split="train"), entry("b", [2], split="val"), entry("c", [3], split="test")], 4)
    out = fb.drop_ids([2, 99])
    assert out.query_ids == ["a", "c"]
    assert out.answers == [[1], [3]]
    assert out.splits == ["train", "test"]
    assert out.counts["answers_unknown_ids"] == 2
    assert out.counts["queries_without_known_answers"] == 1
    assert out.vectors.shape == (2, 4)


@pytest.mark.parametrize(
    "bad, message",
    [
        (entry("q1", [1], dim=5), "query 'q1' has a vector of shape \\(5,\\); the collection's dimension is 4"),
        (entry("q2", [1], vec=[1, np.nan, 0, 0]), "query 'q2' has NaN"),
        (entry("q3", [1], vec=[1, np.inf, 0, 0]), "query 'q3' has NaN or infinite"),
        (entry("q4", [1], split="holdout"), "split is 'holdout'"),
        (entry("q5", [1, 2], grades=[1.0]), "grades must be a list of 2 numbers"),
        (entry("q6", [1], grades=[-1.0]), "grades must be positive finite numbers"),
        (entry("q7", [1], vec=[0, 0, 0, 0]), "all-zero vector"),
        (entry("q8", []), "relevant_ids must be a non-empty list"),
        (entry("q9", [1], ts=1_700_000_420_000), "looks like milliseconds since the epoch: divide by 1,000"),
    ],
)
def test_bad_entries_are_refused_naming_the_query(bad, message):
    with pytest.raises(RefusedInput, match=message):
        prepare_feedback([entry("ok", [1]), bad], 4)


def test_an_empty_log_is_nothing_to_do():
    with pytest.raises(NothingToDo, match="is empty"):
        prepare_feedback([], 4)
