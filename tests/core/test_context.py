import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge_sync.core.context import ValidationContext


def brute(q, x, ids, k, exclude=(), normalize=True):
    v = x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x
    keep = ~np.isin(ids, np.asarray(list(exclude), dtype=np.int64))
    s = q @ v[keep].T
    kid = ids[keep]
    out_i = np.full((len(q), k), -1, dtype=np.int64)
    out_s = np.full((len(q), k), -np.inf)
    for r in range(len(q)):
        order = sorted(range(kid.size), key=lambda c: (-s[r, c], kid[c]))[:k]
        out_i[r, : len(order)] = kid[order]
        out_s[r, : len(order)] = s[r, order]
    return out_i, out_s


@settings(max_examples=60, deadline=None)
@given(
    nq=st.integers(0, 6),
    n=st.integers(1, 50),
    k=st.integers(1, 60),  # also k > N (padding) and k > block rows
    block=st.integers(1, 17),  # ragged last block
    n_excl=st.integers(0, 50),
    normalize=st.booleans(),
    as_blocks=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_streamed_context_equals_brute_force(nq, n, k, block, n_excl, normalize, as_blocks, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(nq, 4))
    x = rng.normal(size=(n, 4))
    ids = rng.permutation(5 * n)[:n].astype(np.int64)
    exclude = rng.choice(ids, size=min(n_excl, n), replace=False)
    if as_blocks:
        corpus = [(ids[i : i + block], x[i : i + block]) for i in range(0, n, block)]
        ctx = ValidationContext.from_corpus(q, iter(corpus), k, exclude=set(exclude.tolist()), normalize=normalize)
    else:
        ctx = ValidationContext.from_corpus(q, x, k, ids=ids, exclude=exclude, normalize=normalize, block_size=block)
    want_i, want_s = brute(q, x, ids, k, exclude, normalize)
    assert ctx.ids.shape == (nq, k) and ctx.k == k and len(ctx) == nq
    assert np.array_equal(ctx.ids, want_i)
    np.testing.assert_allclose(ctx.scores, want_s, rtol=0, atol=1e-12)


def test_merge_of_two_halves_equals_the_whole():
    rng = np.random.default_rng(3)
    q, x = rng.normal(size=(5, 6)), rng.normal(size=(40, 6))
    ids = np.arange(100, 140)
    whole = ValidationContext.from_corpus(q, x, 7, ids=ids)
    a = ValidationContext.from_corpus(q, x[:25], 7, ids=ids[:25])
    b = ValidationContext.from_corpus(q, x[25:], 7, ids=ids[25:])
    m = a.merge(b)
    assert np.array_equal(m.ids, whole.ids)
    np.testing.assert_allclose(m.scores, whole.scores)
    # overlapping contexts: a record present in both is kept once
    m2 = whole.merge(a)
    assert np.array_equal(m2.ids, whole.ids)
    assert np.array_equal(whole.merge(b, k=3).ids, whole.ids[:, :3])


def test_constructor_orders_and_validates():
    ctx = ValidationContext([[3, 1, -1]], [[0.2, 0.5, -np.inf]])
    assert ctx.ids.tolist() == [[1, 3, -1]]
    assert ctx.scores[0, :2].tolist() == [0.5, 0.2]
    with pytest.raises(ValueError, match="same 2-d shape"):
        ValidationContext([[1, 2]], [[0.1]])
    with pytest.raises(ValueError, match="finite"):
        ValidationContext([[1]], [[np.nan]])
    with pytest.raises(ValueError, match="score -inf"):
        ValidationContext([[1]], [[-np.inf]])
    with pytest.raises(ValueError, match="integers"):
        ValidationContext([[1.5]], [[0.1]])
    with pytest.raises(ValueError, match="2 queries"):
        ctx.merge(ValidationContext.empty(2, 3))
    e = ValidationContext.empty(2, 3)
    assert e.ids.tolist() == [[-1] * 3] * 2 and np.all(np.isneginf(e.scores))


def test_everything_excluded_gives_padding_and_truncate_take():
    q, x = np.ones((2, 3)), np.eye(3)
    ctx = ValidationContext.from_corpus(q, x, 2, exclude=[0, 1, 2])
    assert ctx.ids.tolist() == [[-1, -1], [-1, -1]]
    ctx = ValidationContext.from_corpus(np.array([[1.0, 2.0, 3.0]]), x, 3)
    assert ctx.ids.tolist() == [[2, 1, 0]]
    assert ctx.truncate(1).ids.tolist() == [[2]]
    assert ctx.take([0, 0]).ids.tolist() == [[2, 1, 0], [2, 1, 0]]


def test_cosine_vs_dot():
    q = np.array([[1.0, 0.0]])
    x = np.array([[10.0, 10.0], [0.9, 0.0]])
    assert ValidationContext.from_corpus(q, x, 1).ids.tolist() == [[1]]  # cosine 1.0 beats 0.707
    assert ValidationContext.from_corpus(q, x, 1, normalize=False).ids.tolist() == [[0]]  # dot 10 beats 0.9


@settings(max_examples=40, deadline=None)
@given(
    nq=st.integers(1, 30),
    n=st.integers(2, 400),
    k=st.integers(1, 8),
    block=st.sampled_from([1, 3, 16, 64, 8192]),
    seed=st.integers(0, 10**6),
)
def test_streamed_top_k_keeps_the_id_order_among_many_ties(nq, n, k, block, seed):
    """Coarse values and duplicate records make ties at the k-th place common; the block cut (a
    block's own top-k by value before the merge) must keep every tied score, so the smallest ids win
    as in a full sort by (score desc, id asc)."""
    from nudge_sync.core.metrics import rank, stream_topk

    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, 3)).astype(np.float64)
    x[rng.integers(0, n, n // 2)] = x[rng.integers(0, n, n // 2)]
    q = rng.integers(-2, 3, size=(nq, 3)).astype(np.float64)
    ids = rng.permutation(3 * n)[:n].astype(np.int64)
    got_i, got_s = stream_topk(q, x, k, ids=ids, block_size=block)
    want_i, want_s = rank(q @ x.T, ids, k)
    assert np.array_equal(got_i, want_i)
    assert np.array_equal(got_s, want_s)
