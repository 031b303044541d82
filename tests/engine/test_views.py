"""Views over a collection: the dot-space rewrite ranks exactly like each metric, and the exact
(streamed) context equals a brute-force one, on every metric."""

from __future__ import annotations

import numpy as np
import pytest

from nudge_sync.engine.views import IdSpace, View, as_dot_space, exact_topk, similarity_to_dot


class ArrayStore:
    """The smallest VectorStore surface exact_topk needs, over arrays (no database behaviour)."""

    def __init__(self, ids, vectors):
        self.ids, self.vectors = ids, vectors

    def iter_vectors(self, batch_size=1000):
        for s in range(0, len(self.ids), batch_size):
            yield self.ids[s : s + batch_size], self.vectors[s : s + batch_size]


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def db_scores(metric, q, v):
    """What a database returns (higher = better): cosine similarity, inner product, -squared L2."""
    if metric == "cosine":
        return unit(q) @ unit(v).T
    if metric == "dot":
        return q @ v.T
    return -(((q[:, None, :] - v[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_dot_space_ranks_and_scores_like_the_metric(metric):
    rng = np.random.default_rng(0)
    q = unit(rng.standard_normal((7, 12)))
    v = rng.standard_normal((50, 12)) * (1 if metric != "l2" else 1)
    if metric != "cosine":
        v = unit(v)  # the engine requires unit-norm records for dot and l2
    qq, vv = as_dot_space(metric, q, v)
    ours = qq @ vv.T
    theirs = similarity_to_dot(metric, db_scores(metric, q, v))
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_exact_topk_equals_brute_force_with_exclusions_and_extras(metric):
    rng = np.random.default_rng(1)
    n, d, k = 300, 8, 10
    ids = [f"r{i}" for i in range(n)]
    v = unit(rng.standard_normal((n, d))).astype(np.float32)
    q = unit(rng.standard_normal((5, d))).astype(np.float32)
    excluded = set(ids[::3])
    extra_ids = ids[:6:3]
    extra = unit(rng.standard_normal((2, d))).astype(np.float32)  # e.g. originals of nudged records
    space = IdSpace(ids)
    (ctx,) = exact_topk(ArrayStore(ids, v), q, k, [View(excluded, extra_ids, extra)], space, metric, batch_size=64)

    keep = [i for i in range(n) if ids[i] not in excluded]
    pool_v = np.vstack([v[keep], extra])
    pool_ids = [ids[i] for i in keep] + extra_ids
    scores = similarity_to_dot(metric, db_scores(metric, q.astype(np.float64), pool_v.astype(np.float64)))
    for row in range(len(q)):
        order = np.argsort(-scores[row], kind="stable")[:k]
        assert [space.record_id(j) for j in ctx.ids[row]] == [pool_ids[j] for j in order]
        np.testing.assert_allclose(ctx.scores[row], scores[row][order], atol=1e-5)


def test_prefetched_yields_everything_in_order_and_re_raises_errors():
    from nudge_sync.engine.views import prefetched

    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("page 2 broke")

    got = []
    with pytest.raises(ValueError, match="page 2 broke"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]


def test_prefetched_stops_and_closes_the_source_when_the_consumer_stops():
    import threading

    from nudge_sync.engine.views import prefetched

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    gen = prefetched(endless(), depth=1)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert closed.wait(5), "the source generator was not closed"
    assert not any(t.name == "nudge-sync-prefetch" for t in threading.enumerate())
