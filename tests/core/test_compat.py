import numpy as np
import pytest

import nudge_sync.compat as compat
from nudge_sync.compat import NUDGEM, NUDGEN, finetune_embeddings

from ._data import make_problem
from ._mirror import ref_nudge_m, ref_nudge_n, unit


def sets(p, limit):
    va = [[a for a in row if a < limit] or [0] for row in p.va]
    return {"q_embs": p.tq, "q_ans_indx": p.ta}, {"q_embs": p.vq, "q_ans_indx": va}, va


@pytest.mark.parametrize("seed", range(4))
def test_nudgen_is_a_drop_in(seed):
    p = make_problem(200 + seed, n=70, nt=35, nv=25, dtype=np.float32)
    tr, va_set, va = sets(p, 50)
    X, nontrain = p.X[:50], p.X[50:]
    want, g, _ = ref_nudge_n(X, p.tq, p.ta, p.vq, va, nontrain, val_k=2)
    m = NUDGEN(device="cpu")
    out = m.finetune_embeddings(X, tr, va_set, nontrain, val_batch_size=7, val_k=2)
    assert m.gamma_ == g
    assert out.shape == X.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_nudgem_is_a_drop_in(seed):
    p = make_problem(300 + seed, n=70, nt=35, nv=25, max_ans=3, dtype=np.float32)
    tr, va_set, va = sets(p, 50)
    X, nontrain = p.X[:50], p.X[50:]
    want, g = ref_nudge_m(X, p.tq, p.ta, p.vq, va, nontrain)
    m = NUDGEM()
    out = m.finetune_embeddings(X, tr, va_set, nontrain)
    assert m.gamma_ == pytest.approx(g, rel=1e-5, abs=1e-9)
    np.testing.assert_allclose(out, want, atol=2e-6)
    untouched = np.setdiff1d(np.arange(50), m.estimator_.moved_ids_)
    np.testing.assert_allclose(np.linalg.norm(out[untouched], axis=1), 1.0, atol=1e-6)


def test_given_gamma_scalar_or_one_element_list():
    p = make_problem(5, dtype=np.float32)
    tr, va_set, _ = sets(p, len(p.X))
    a = NUDGEN().finetune_embeddings(p.X, tr, va_set, gamma=0.1)
    b = NUDGEN().finetune_embeddings(p.X, tr, va_set, gamma=[0.1])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="single number"):
        NUDGEN().finetune_embeddings(p.X, tr, va_set, gamma=[0.1, 0.2])
    out = NUDGEM().finetune_embeddings(p.X, tr, va_set, gamma=0.5)
    moved = np.unique(np.concatenate([np.asarray(r) for r in p.ta]))
    np.testing.assert_allclose(np.linalg.norm(out[moved] - unit(p.X[moved]), axis=1), 0.5, atol=1e-6)


def test_reference_hazards_are_handled():
    p = make_problem(6, dtype=np.float32)
    tr, va_set, va = sets(p, len(p.X))
    # H2: an empty validation answer list no longer turns γ into 0
    va_empty = {"q_embs": np.vstack([p.vq, p.vq[:1]]), "q_ans_indx": va + [[]]}
    m1, m2 = NUDGEN(), NUDGEN()
    m1.finetune_embeddings(p.X, tr, va_set)
    m2.finetune_embeddings(p.X, tr, va_empty)
    assert m2.gamma_ == m1.gamma_ and m2.estimator_.n_val_dropped_ == 1
    # H5: fewer nontrain rows than val_k
    out = NUDGEN().finetune_embeddings(p.X[:40], {"q_embs": p.tq, "q_ans_indx": p.ta},
                                       {"q_embs": p.vq, "q_ans_indx": [[a for a in r if a < 40] or [0] for r in va]},
                                       p.X[40:42], val_k=3)
    assert np.all(np.isfinite(out))
    # H6: mixed dtypes
    NUDGEN().finetune_embeddings(p.X.astype(np.float64), tr, va_set)


def test_function_api_and_errors():
    p = make_problem(7, dtype=np.float32)
    tr, va_set, va = sets(p, len(p.X))
    out, est = finetune_embeddings(p.X, tr, va_set, method="M", gamma_search="fine", objective="ndcg@5",
                                   return_estimator=True)
    assert est.objective_ == "ndcg@5" and out.shape == p.X.shape
    graded = dict(va_set, q_ans_indx_rel=[[2.0] * len(r) for r in va])
    finetune_embeddings(p.X, tr, graded, method="nudge-n", gamma_search="fine", objective="ndcg@3")
    with pytest.raises(ValueError, match="method"):
        finetune_embeddings(p.X, tr, va_set, method="X")
    with pytest.raises(ValueError, match="q_embs"):
        finetune_embeddings(p.X, {"q_ans_indx": p.ta}, va_set)
    with pytest.raises(ValueError, match="out of range"):
        finetune_embeddings(p.X, {"q_embs": p.tq, "q_ans_indx": [[len(p.X)]] * len(p.tq)}, va_set)
    assert set(compat.__all__) == {"NUDGEN", "NUDGEM", "QueriesAnswersDict", "finetune_embeddings"}
