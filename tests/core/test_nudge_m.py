import numpy as np
import pytest

from nudge_sync import _gamma as gm
from nudge_sync._context import ValidationContext
from nudge_sync._metrics import evaluate, rank
from nudge_sync._nudge import M_FINE_GAMMA_MAX, NudgeM

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
    iv = {"L": np.array([0.0, 0.2, 0.5]), "U": np.array([0.3, np.inf, 0.6]),
          "shiftL": np.zeros(3, bool), "shiftU": np.zeros(3, bool)}
    g, vals, counts = gm.m_parity_sweep(iv)
    assert g == 0.2
    assert vals.tolist() == [0.0, 0.2, 0.3, 0.5, 0.6] and counts.tolist() == [1, 2, 1, 2, 1]
    assert ref_sweep(iv["L"], iv["U"]) == 0.2
    # a shared endpoint: [0, x] ends where [x, inf) starts. Unshifted: the reference's grouped sweep
    # never counts both; shifted (its +1e-8 moved them apart in float32): both count at x.
    iv = {"L": np.array([0.0, 0.4]), "U": np.array([0.4, np.inf]),
          "shiftL": np.array([False, False]), "shiftU": np.array([False, False])}
    assert gm.m_parity_sweep(iv)[0] == 0.0
    iv["shiftL"][1] = iv["shiftU"][0] = True
    assert gm.m_parity_sweep(iv)[0] == 0.4 and gm.m_parity_count(iv, 0.4) == 2
    empty = {"L": np.zeros(0), "U": np.zeros(0), "shiftL": np.zeros(0, bool), "shiftU": np.zeros(0, bool)}
    assert gm.m_parity_sweep(empty)[0] == 0.0


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
    est = NudgeM(gamma_search="fine", objective="ndcg@5").fit(p.X, p.tq, p.ta, p.vq, p.va)
    assert 0 <= est.gamma_ <= M_FINE_GAMMA_MAX
    assert est.val_score_ >= est.val_score_before_
    Gh = unit(g_sums(len(p.X), p.tq, p.ta))
    pl = est.plateaus_
    for s, e, value in pl[:: max(1, len(pl) // 15)]:
        g = (s + e) / 2
        Y = unit(p.X) + g * Gh
        ids, _ = rank(p.vq @ Y.T, None, 5)
        assert value == pytest.approx(evaluate(ids, p.va, ["ndcg@5"])["ndcg@5"], abs=1e-12)
    assert NudgeM(gamma_search="fine", gamma_max=0.05).fit(p.X, p.tq, p.ta, p.vq, p.va).gamma_ <= 0.05
