import math

import numpy as np
import pytest

from nudge_sync.core.answers import Answers
from nudge_sync.core.context import ValidationContext
from nudge_sync.core.nudge import NudgeN

from ._data import make_problem
from ._mirror import n_solution, ref_nudge_n, unit

E1, E2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def fit_one(base, train_q, gamma, **kw):
    """Record 0 answered by every training query; no validation (γ given)."""
    return NudgeN(gamma=gamma, **kw).fit(np.atleast_2d(base), np.atleast_2d(train_q), [[0]] * len(np.atleast_2d(train_q)))


def test_closed_form_by_hand():
    # v = e1, G = e2: θ = 90°, x = (1 - γ/2) e1 + sqrt(γ(4-γ))/2 e2
    est = fit_one(E1, E2, 0.5)
    assert est.moved_ids_.tolist() == [0]
    np.testing.assert_allclose(est.moved_vectors_[0], [0.75, math.sqrt(0.5 * 3.5) / 2, 0.0], atol=1e-7)
    assert np.linalg.norm(est.moved_vectors_[0].astype(float) - E1) ** 2 == pytest.approx(0.5, abs=1e-6)  # ‖Δ‖² = γ


def test_saturation_jumps_onto_g_hat():
    # v = e1, G along (1, 1): θ = 45°, 1 - cos θ/... saturates when cos θ >= 1 - γ/2, i.e. γ >= 0.586
    g = np.array([1.0, 1.0, 0.0])
    assert not np.allclose(fit_one(E1, g, 0.5).moved_vectors_[0], unit(g), atol=1e-3)
    est = fit_one(E1, g, 0.6)
    np.testing.assert_allclose(est.moved_vectors_[0], unit(g), atol=1e-7)
    # the unnormalised query sum and its direction give the same result
    np.testing.assert_allclose(fit_one(E1, 7 * g, 0.6).moved_vectors_[0], unit(g), atol=1e-7)


def test_negative_rho_skip_rule_is_an_option():
    q = np.array([-1.0, 1.0, 0.0])  # v·G < 0
    assert fit_one(E1, q, 0.3).moved_ids_.size == 0
    est = fit_one(E1, q, 0.3, skip_negative_rho=False)
    x = est.moved_vectors_[0].astype(float)
    assert np.linalg.norm(x - E1) ** 2 == pytest.approx(0.3, abs=1e-6)
    assert x @ unit(q) > E1 @ unit(q)
    # with the skip rule a record still saturates when γ covers its angle (reference order)
    np.testing.assert_allclose(fit_one(E1, q, 3.5).moved_vectors_[0], unit(q), atol=1e-7)


def test_grade_weighting_and_query_normalisation_change_g():
    base = np.array([[1.0, 0.0, 0.0]])
    tq = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 10.0]])
    ans = Answers.from_lists([[0], [0]], [[3.0], [1.0]])
    sat = lambda **kw: NudgeN(gamma=4.0, **kw).fit(base, tq, ans).moved_vectors_[0]  # γ = 4 saturates: x = Ĝ
    np.testing.assert_allclose(sat(), unit([0, 1, 10]), atol=1e-7)
    np.testing.assert_allclose(sat(normalize_queries=True), unit([0, 1, 1]), atol=1e-7)
    np.testing.assert_allclose(sat(grade_weighting=True), unit([0, 3, 10]), atol=1e-7)
    np.testing.assert_allclose(sat(grade_weighting=True, normalize_queries=True), unit([0, 3, 1]), atol=1e-7)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("val_k", [1, 3])
def test_parity_with_the_reference_semantics(seed, val_k):
    p = make_problem(seed, n=80, nt=40, nv=25, dtype=np.float32)
    # data rows = the first 60 records (every train/val answer lives there), the rest is "nontrain"
    va = [[a for a in row if a < 60] or [0] for row in p.va]
    X, nontrain = p.X[:60], p.X[60:]
    want, g, accs = ref_nudge_n(X, p.tq, p.ta, p.vq, va, nontrain, val_k=val_k)
    ctx = ValidationContext.from_corpus(p.vq, nontrain, val_k, ids=60 + np.arange(len(nontrain)))
    est = NudgeN(val_k=val_k).fit(X, p.tq, p.ta, p.vq, va, val_context=ctx)
    assert est.gamma_ == g
    np.testing.assert_allclose(est.gammas_, [0.02 * x for x in range(25)])
    np.testing.assert_allclose(est.validation_curve_, accs, atol=1e-12)
    assert est.val_score_before_ == pytest.approx(accs[0]) and est.val_score_ == pytest.approx(accs.max())
    assert est.objective_ == ("hit@1" if val_k == 1 else f"recall@{val_k}")
    np.testing.assert_allclose(est.transform(unit(X)), want, atol=2e-6)


def test_records_outside_training_never_move_and_transform_uses_ids():
    p = make_problem(1)
    est = NudgeN(gamma=0.3).fit(p.X, p.tq, p.ta)
    assert set(est.moved_ids_.tolist()) <= set(p.trained.tolist())
    assert np.all(np.diff(est.moved_ids_) > 0)
    assert est.moved_vectors_.dtype == np.float32
    ids = np.arange(len(p.X))[::-1] + 1000
    est2 = NudgeN(gamma=0.3).fit(p.X[::-1], p.tq, [[1000 + a for a in r] for r in p.ta], base_ids=ids)
    out = est2.transform(unit(p.X[::-1]), ids=ids)
    np.testing.assert_allclose(out[::-1], est.transform(unit(p.X)), atol=1e-6)


def test_user_gamma_reports_the_curve_there():
    p = make_problem(2)
    est = NudgeN(gamma=0.1).fit(p.X, p.tq, p.ta, p.vq, p.va)
    assert est.gamma_ == 0.1 and est.gammas_.tolist() == [0.1]
    assert est.validation_curve_.shape == (1,) and est.val_score_ == est.validation_curve_[0]
    assert NudgeN(gamma=[0.1]).fit(p.X, p.tq, p.ta, p.vq, p.va).gamma_ == 0.1
    est = NudgeN(gamma=0.1).fit(p.X, p.tq, p.ta)  # no validation data: γ used as is
    assert math.isnan(est.val_score_) and est.moved_ids_.size > 0


@pytest.mark.parametrize("gamma", [-0.1, float("nan"), float("inf"), 4.5, [0.1, 0.2], "x", True])
def test_invalid_gamma(gamma):
    p = make_problem(0)
    with pytest.raises(ValueError, match="gamma"):
        NudgeN(gamma=gamma).fit(p.X, p.tq, p.ta, p.vq, p.va)


def test_empty_answer_lists_are_dropped_and_counted():
    p = make_problem(3, nt=10, nv=8)
    ta = p.ta + [[]]
    tq = np.vstack([p.tq, p.tq[:1]])
    va = p.va + [[], []]
    vq = np.vstack([p.vq, p.vq[:2]])
    est = NudgeN().fit(p.X, tq, ta, vq, va)
    ref = NudgeN().fit(p.X, p.tq, p.ta, p.vq, p.va)
    assert est.n_train_dropped_ == 1 and est.n_val_dropped_ == 2
    assert est.gamma_ == ref.gamma_ and est.val_score_ == ref.val_score_
    with pytest.raises(ValueError, match="no validation query has answers"):
        NudgeN().fit(p.X, p.tq, p.ta, p.vq[:2], [[], []])
    assert NudgeN(gamma=0.2).fit(p.X, p.tq, p.ta, p.vq[:2], [[], []]).gamma_ == 0.2


def test_input_errors_name_the_argument():
    p = make_problem(4)
    with pytest.raises(ValueError, match="train_queries has dimension 3 but base_vectors has 8"):
        NudgeN().fit(p.X, p.tq[:, :3], p.ta, p.vq, p.va)
    with pytest.raises(ValueError, match="val_queries has dimension"):
        NudgeN().fit(p.X, p.tq, p.ta, p.vq[:, :3], p.va)
    bad = p.X.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="base_vectors contains non-finite values \\(first bad row 5\\)"):
        NudgeN().fit(bad, p.tq, p.ta, p.vq, p.va)
    with pytest.raises(ValueError, match="record 999"):
        NudgeN().fit(p.X, p.tq, [[999]] + p.ta[1:], p.vq, p.va)
    with pytest.raises(ValueError, match="unique"):
        NudgeN().fit(p.X, p.tq, p.ta, p.vq, p.va, base_ids=np.zeros(len(p.X), dtype=int))
    with pytest.raises(ValueError, match="rows"):
        NudgeN().fit(p.X, p.tq, p.ta[:-1], p.vq, p.va)
    with pytest.raises(ValueError, match="both"):
        NudgeN().fit(p.X, p.tq, p.ta, p.vq)
    with pytest.raises(ValueError, match="gamma must be given"):
        NudgeN().fit(p.X, p.tq, p.ta)
    with pytest.raises(ValueError, match="gamma_search"):
        NudgeN(gamma_search="grid").fit(p.X, p.tq, p.ta, p.vq, p.va)  # fine, exact or parity
    with pytest.raises(ValueError, match="unknown metric"):
        NudgeN(objective="ndcg").fit(p.X, p.tq, p.ta, p.vq, p.va)
    with pytest.raises(ValueError, match="val_k"):
        NudgeN(val_k=0).fit(p.X, p.tq, p.ta, p.vq, p.va)
    zero = p.X.copy()
    zero[p.ta[0][0]] = 0
    with pytest.raises(ValueError, match="zero norm"):
        NudgeN().fit(zero, p.tq, p.ta, p.vq, p.va)
    with pytest.raises(RuntimeError, match="not fitted"):
        NudgeN().transform(p.X)


def test_context_must_not_contain_moving_records_and_must_be_deep_enough():
    p = make_problem(5)
    ctx = ValidationContext.from_corpus(p.vq, p.X, 3)
    with pytest.raises(ValueError, match="answers a training query and may move"):
        NudgeN().fit(p.X[:30], p.tq, p.ta, p.vq, p.va, val_context=ctx)
    ctx = ValidationContext.from_corpus(p.vq, p.X[30:], 1, ids=30 + np.arange(len(p.X) - 30))
    with pytest.raises(ValueError, match="k=1 columns but the γ search needs the top 3"):
        NudgeN(val_k=3).fit(p.X[:30], p.tq, p.ta, p.vq, p.va, val_context=ctx)


def test_near_parallel_g_never_gives_nan_rows():
    # H1: G (the sum of queries equal to the record up to float32 noise) parallel to v
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 32)).astype(np.float32)
    tq = (X * 3 + rng.normal(size=X.shape).astype(np.float32) * 1e-7).astype(np.float32)
    ans = [[i] for i in range(500)]
    for g in (0.02, 0.3, 2.0):
        est = NudgeN(gamma=g).fit(X, tq, ans)
        assert np.all(np.isfinite(est.moved_vectors_))
        np.testing.assert_allclose(np.linalg.norm(est.moved_vectors_, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(est.transform(unit(X)), unit(X), atol=1e-5)  # parallel: x = Ĝ = v


@pytest.mark.parametrize("search", ["fine", "exact"])
def test_fine_and_exact_modes_respect_gamma_max_and_report_plateaus(search):
    p = make_problem(6, nv=30)
    est = NudgeN(gamma_search=search, objective="ndcg@10", gamma_max=0.1).fit(p.X, p.tq, p.ta, p.vq, p.va)
    assert 0 <= est.gamma_ <= 0.1
    pl = est.plateaus_
    assert pl[0, 0] == 0 and pl[-1, 1] == pytest.approx(0.1)
    assert np.all(pl[1:, 0] == pl[:-1, 1])  # contiguous pieces
    assert est.val_score_ == pytest.approx(np.nanmax(pl[:, 2]))  # NaN: not computed, below the best
    assert est.objective_ == "ndcg@10"
    assert np.all(np.diff(est.gammas_) >= 0)


def test_exact_choice_is_the_middle_of_the_first_best_plateau():
    p = make_problem(7, nv=30)
    est = NudgeN(gamma_search="exact", objective="recall@5").fit(p.X, p.tq, p.ta, p.vq, p.va)
    pl = est.plateaus_
    best = np.round(np.nanmax(pl[:, 2]), 12)
    first = np.flatnonzero((np.round(pl[:, 2], 12) == best) & (pl[:, 1] > pl[:, 0]))[0]
    assert est.gamma_ == pytest.approx((pl[first, 0] + pl[first, 1]) / 2)


def test_parity_mode_equals_direct_evaluation_on_each_grid_point():
    # every grid score equals a brute-force re-scoring of the transformed corpus
    p = make_problem(8, n=50, nv=30)
    est = NudgeN(val_k=2).fit(p.X, p.tq, p.ta, p.vq, p.va)
    from nudge_sync.core.metrics import evaluate, rank

    from ._mirror import g_sums

    G = g_sums(len(p.X), p.tq, p.ta)
    for g, score in zip(est.gammas_, est.validation_curve_):
        Y = n_solution(unit(p.X), G, g)
        ids, _ = rank(p.vq @ Y.T, None, 2)
        assert score == pytest.approx(evaluate(ids, p.va, ["recall@2"])["recall@2"], abs=1e-12)


def test_dtypes_are_cast_and_nonfinite_queries_are_named():
    p = make_problem(11)
    a = NudgeN().fit(p.X.astype(np.float64), p.tq.astype(np.float32), p.ta, p.vq.astype(np.float16), p.va)
    b = NudgeN().fit(p.X, p.tq, p.ta, p.vq.astype(np.float16).astype(np.float64), p.va)
    assert a.gamma_ == b.gamma_
    ints = NudgeN(gamma=0.2).fit(np.round(p.X * 10).astype(np.int64), p.tq, p.ta)
    assert ints.moved_vectors_.dtype == np.float32
    vq = p.vq.copy()
    vq[3, 0] = np.inf
    with pytest.raises(ValueError, match="val_queries contains non-finite values \\(first bad row 3\\)"):
        NudgeN().fit(p.X, p.tq, p.ta, vq, p.va)
    with pytest.raises(ValueError, match="numeric"):
        NudgeN().fit(p.X.astype(str), p.tq, p.ta, p.vq, p.va)


def test_fine_mode_does_not_move_anything_without_validation_gain():
    # validation is perfect already: every γ ties with γ = 0, so nothing moves
    X, tq = np.eye(3), np.eye(3) + 0.3
    for est in (NudgeN(gamma_search="fine", objective="ndcg@3"), NudgeN(gamma_search="fine", skip_negative_rho=False)):
        est.fit(X, tq, [[0], [1], [2]], np.eye(3), [[0], [1], [2]])
        assert est.gamma_ == 0.0 and est.moved_ids_.size == 0 and est.val_score_ == est.val_score_before_ == 1.0
    from nudge_sync.core.nudge import NudgeM

    est = NudgeM(gamma_search="fine").fit(X, tq, [[0], [1], [2]], np.eye(3), [[0], [1], [2]])
    assert est.gamma_ == 0.0 and est.moved_ids_.size == 0
