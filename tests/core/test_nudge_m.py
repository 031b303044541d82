import numpy as np
import pytest

from nudge_sync.core.context import ValidationContext
from nudge_sync.core.metrics import evaluate, rank
from nudge_sync.core.m_parity import m_parity_count, m_parity_sweep
from nudge_sync.core.nudge import M_FINE_GAMMA_MAX, NudgeM

from ._data import make_problem
from ._mirror import g_sums, ref_m_intervals, ref_nudge_m, ref_sweep, unit


def test_closed_form_by_hand():
    est = NudgeM(gamma=0.25).fit(np.array([[2.0, 0.0, 0.0]]), np.array([[0.0, 3.0, 0.0]]), [[0]])
    np.testing.assert_allclose(est.moved_vectors_, [[1.0, 0.25, 0.0]])  # v + γ Ĝ, not normalised
    assert NudgeM(gamma=0.0).fit(np.eye(2), np.eye(2), [[0], [1]]).moved_ids_.size == 0


def test_interval_by_hand():
    # one validation query q; answer r0 (trained toward e2), competitor r1 (untrained)
    base = np.array([[1.0, 0.0], [0.8, 0.6]])
    q = np.array([[0.9, 0.5]])
    s0, s1 = 0.9, 0.9 * 0.8 + 0.5 * 0.6  # 0.9 < 1.02: r0 loses at γ = 0
    c0 = 0.5  # q·Ĝ0 with Ĝ0 = e2
    est = NudgeM().fit(base, np.array([[0.0, 1.0]]), [[0]], q, [[0]])
    assert est.gamma_ == pytest.approx((s1 - s0) / c0)  # r0 wins from here on (ties count)
    assert est.val_score_before_ == 0.0 and est.val_score_ == 1.0
    assert est.objective_ == "pair_hit@1"


def test_sweep_counts_like_the_reference():
    f32 = lambda *x: np.array(x, dtype=np.float32)  # noqa: E731
    iv = {"L": f32(0.0, 0.2, 0.5), "U": f32(0.3, 1e8, 0.6)}
    g, vals, counts = m_parity_sweep(iv)
    assert g == np.float32(0.2)
    assert vals.tolist() == f32(0.0, 0.2, 0.3, 0.5, 0.6, 1e8).astype(float).tolist()
    assert counts.tolist() == [1, 2, 1, 2, 1, 0]
    assert ref_sweep(iv["L"], iv["U"]) == g
    # a shared end point: [0, x) ends where [x, ...) starts, the grouped sweep never counts both
    iv = {"L": f32(0.0, 0.4), "U": f32(0.4, 1e8)}
    assert m_parity_sweep(iv)[0] == 0.0 == ref_sweep(iv["L"], iv["U"]) and m_parity_count(iv, 0.4) == 1
    # a degenerate interval [0, 0] (an exact copy of the answer with a larger slope) never counts
    iv = {"L": f32(0.0, 0.0, 0.25), "U": f32(0.0, 0.3, 1e8)}
    assert m_parity_count(iv, 0.0) == 1 and m_parity_sweep(iv)[0] == np.float32(0.25) == ref_sweep(iv["L"], iv["U"])
    assert m_parity_sweep({"L": f32(), "U": f32()})[0] == 0.0


def test_ratios_use_the_reference_arithmetic():
    """Δs / (Δg + 1e-8) in float32, max with 0, 1e8 without an upper constraint, drop on Δg = 0
    with Δs > 0: a float64 emulation of the same formulas agrees bit for bit."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = make_problem(int(rng.integers(1 << 20)), n=40, nt=30, nv=15, max_ans=3, dtype=np.float32)
        p.X[5] = p.X[3]  # exact copies: Δs = 0 against each other
        est = NudgeM().fit(p.X, p.tq, p.ta, p.vq, p.va)
        lows, highs = ref_m_intervals(p.X, p.tq, p.ta, p.vq, p.va, None, dtype=np.float32)[2:]
        assert est.gamma_ == pytest.approx(ref_sweep(lows, highs), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parity_with_the_reference_semantics(seed, dtype):
    p = make_problem(100 + seed, n=70, nt=40, nv=25, max_ans=4, dtype=dtype)
    X, nontrain = p.X[:50], p.X[50:]
    va = [[a for a in row if a < 50] or [1] for row in p.va]
    want, g = ref_nudge_m(X, p.tq, p.ta, p.vq, va, nontrain, dtype=dtype)
    ctx = ValidationContext.from_corpus(p.vq, nontrain, 1, ids=50 + np.arange(len(nontrain)))
    est = NudgeM().fit(X, p.tq, p.ta, p.vq, va, val_context=ctx)
    assert est.gamma_ == pytest.approx(g, rel=1e-5, abs=1e-9)
    np.testing.assert_allclose(est.transform(unit(X)), want, atol=2e-6)
    assert est.val_score_ >= est.val_score_before_
    # the reported score is the sweep's count at γ* over all validation pairs
    lows, highs = ref_m_intervals(X, p.tq, p.ta, p.vq, va, nontrain, dtype=dtype)[2:]
    n_pairs = sum(len(set(r)) for r in va)
    best_open = max([np.sum((lows <= v) & (highs > v)) for v in np.concatenate([[0.0], lows])])
    assert est.val_score_ * n_pairs >= best_open  # shared endpoints may add to the open count


def test_no_pair_ever_wins_gives_zero():
    # the answer is never top-1: the trained direction points away from the query
    base = np.array([[1.0, 0.0], [0.0, 1.0]])
    est = NudgeM().fit(base, np.array([[-1.0, 0.0]]), [[0]], np.array([[0.1, 1.0]]), [[0]])
    assert est.gamma_ == 0.0 and est.val_score_ == 0.0 and est.moved_ids_.size == 0


def test_answers_in_the_context_and_in_the_base_that_do_not_move():
    p = make_problem(9, n=60, nt=20, nv=30)  # training answers lie in rows 0..29
    ctx = ValidationContext.from_corpus(p.vq, p.X[40:], 2, ids=40 + np.arange(20))
    est = NudgeM().fit(p.X[:40], p.tq, p.ta, p.vq, p.va, val_context=ctx)
    # same as the dense mirror over the whole corpus (val answers may sit in rows 40..59)
    want, g = ref_nudge_m(p.X, p.tq, p.ta, p.vq, p.va, None, dtype=np.float64)
    assert est.gamma_ == pytest.approx(g, rel=1e-6, abs=1e-12)
    np.testing.assert_allclose(est.transform(unit(p.X)), want, atol=1e-6)


def test_fine_mode_curve_matches_brute_force():
    p = make_problem(10, n=60, nt=30, nv=30)
    Gh = unit(g_sums(len(p.X), p.tq, p.ta))

    def brute(g):
        ids, _ = rank(p.vq @ (unit(p.X) + g * Gh).T, None, 5)
        return evaluate(ids, p.va, ["ndcg@5"])["ndcg@5"]

    exact = NudgeM(gamma_search="exact", objective="ndcg@5").fit(p.X, p.tq, p.ta, p.vq, p.va)
    fine = NudgeM(gamma_search="fine", objective="ndcg@5").fit(p.X, p.tq, p.ta, p.vq, p.va)
    for est in (exact, fine):
        assert 0 <= est.gamma_ <= M_FINE_GAMMA_MAX
        assert est.val_score_ >= est.val_score_before_
        assert est.val_score_ == pytest.approx(brute(est.gamma_), abs=1e-12)
        pl = est.plateaus_
        for s, e, value in pl[np.isfinite(pl[:, 2])][:: max(1, len(pl) // 15)]:
            assert value == pytest.approx(brute((s + e) / 2), abs=1e-12)
    assert fine.val_score_ <= exact.val_score_ + 1e-12  # exact is the optimum over the range
    assert NudgeM(gamma_search="fine", gamma_max=0.05).fit(p.X, p.tq, p.ta, p.vq, p.va).gamma_ <= 0.05
