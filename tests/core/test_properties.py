"""Property tests: invariants of the estimators and agreement with brute force on random data."""

import os
from contextlib import contextmanager

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudge_sync.core import candidates as cand
from nudge_sync.core.context import ValidationContext
from nudge_sync.core.metrics import evaluate, rank
from nudge_sync.core.nudge import NudgeM, NudgeN

from ._data import make_problem
from ._mirror import g_sums, n_solution, unit

# NUDGE_CORE_EXAMPLES=1000 for a long local run
SETTINGS = dict(max_examples=int(os.environ.get("NUDGE_CORE_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The reference's closed form (used by the oracle) divides 0 by 0 for γ below ~1e-30: keep γ = 0
# or a representable step. The estimators themselves use the rotation form, fine at any γ.
GAMMA_N = st.one_of(st.just(0.0), st.floats(1e-9, 4.0))
OBJECTIVES = st.sampled_from(["hit@1", "hit@3", "recall@1", "recall@4", "ndcg@3", "ndcg@10", "mrr@5"])


@contextmanager
def built_tables(**extra):
    """The candidate tables the fits inside the block build (``extra`` passed to the builder)."""
    tables, original = [], cand.build_candidates

    def recording(*a, **kw):
        tables.append(original(*a, **kw, **extra))
        return tables[-1]

    cand.build_candidates = recording
    try:
        yield tables
    finally:
        cand.build_candidates = original



@st.composite
def problems(draw):
    seed = draw(st.integers(0, 10**6))
    n = draw(st.integers(6, 45))
    p = make_problem(seed, n=n, d=draw(st.integers(2, 8)), nt=draw(st.integers(1, 20)), nv=draw(st.integers(1, 15)),
                     max_ans=draw(st.integers(1, 4)), noise=draw(st.floats(0.05, 2.0)))
    rng = np.random.default_rng(seed + 1)
    # base = trained records plus some others; the rest of the corpus is the validation context
    extra = rng.random(n) < draw(st.floats(0.0, 1.0))
    in_base = extra.copy()
    in_base[p.trained] = True
    # exact copies of records (dense real corpora hold them): equal scores, identical curves. Each
    # copy stays on its source's side (both trained, or both in the context): their scores then
    # come out of one computation, equal to the bit, as in the brute force that checks them (a
    # copy split across two computations is tied only up to their float noise). Not in 2-d: there
    # two copies with different G turn in the same plane, so their curves coincide until one
    # saturates and float noise, not the tie rule, orders them in the brute force.
    n_copies = draw(st.integers(0, n // 3)) if p.X.shape[1] > 2 else 0
    for group in (p.trained, np.flatnonzero(~in_base)):
        if group.size > 1 and n_copies:
            src, dst = rng.choice(group, n_copies), rng.choice(group, n_copies)
            p.X[dst] = p.X[src]
    return p, np.flatnonzero(in_base), np.flatnonzero(~in_base)


def fit(est, p, base, rest, k):
    ctx = None
    if rest.size:
        ctx = brute_context(p, rest, k)
    return est.fit(p.X[base], p.tq, p.ta, p.vq, p.va, base_ids=base, val_context=ctx)


def brute_context(p, rest, k):
    """The exact context of the records ``rest``, its scores taken from the brute-force product
    that :func:`brute_score` ranks: two exact copies then tie to the bit in both. (A context from
    another product, e.g. ``from_corpus``'s blocks, may put them an ulp apart, and then the
    estimator rightly follows the context's order, not the brute force's.)"""
    scores = (p.vq @ unit(p.X).T)[:, rest]
    width = max(k, rest.size)
    pad = width - rest.size
    ids = np.pad(np.broadcast_to(rest, scores.shape), ((0, 0), (0, pad)), constant_values=-1)
    scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ValidationContext(ids, scores).truncate(k)


def brute_score(p, Y, metric):
    k = int(metric.split("@")[1])
    ids, _ = rank(p.vq @ Y.T, None, k)
    return evaluate(ids, p.va, [metric])[metric]


@settings(**SETTINGS)
@given(problems(), GAMMA_N, st.booleans())
def test_nudge_n_rows_are_unit_norm_within_the_step_and_only_trained_records_move(prob, gamma, skip):
    p, base, rest = prob
    est = NudgeN(gamma=gamma, skip_negative_rho=skip).fit(p.X[base], p.tq, p.ta, base_ids=base)
    X = est.moved_vectors_.astype(np.float64)
    assert np.all(np.isfinite(X))
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    v = unit(p.X[est.moved_ids_])
    assert np.all(np.sum((X - v) ** 2, axis=1) <= gamma + 1e-6)  # float32 output
    assert set(est.moved_ids_.tolist()) <= set(p.trained.tolist())
    full = est.transform(unit(p.X))
    untouched = np.setdiff1d(np.arange(len(p.X)), p.trained)
    assert np.array_equal(full[untouched], unit(p.X)[untouched].astype(full.dtype))
    # float64 closed form of the reference agrees
    Y = n_solution(unit(p.X), g_sums(len(p.X), p.tq, p.ta), gamma, skip)
    np.testing.assert_allclose(full, Y, atol=1e-5)


@settings(**SETTINGS)
@given(problems(), st.floats(0.0, 3.0))
def test_nudge_m_step_has_length_gamma(prob, gamma):
    p, base, rest = prob
    est = NudgeM(gamma=gamma).fit(p.X[base], p.tq, p.ta, base_ids=base)
    step = est.moved_vectors_.astype(np.float64) - unit(p.X[est.moved_ids_])
    np.testing.assert_allclose(np.linalg.norm(step, axis=1), gamma, atol=1e-5)
    assert set(est.moved_ids_.tolist()) <= set(p.trained.tolist())


@settings(**SETTINGS)
@given(problems(), OBJECTIVES, st.integers(1, 3))
def test_chosen_gamma_never_does_worse_than_zero_on_validation(prob, objective, val_k):
    p, base, rest = prob
    k = max(int(objective.split("@")[1]), val_k)
    for est in (NudgeN(val_k=val_k), NudgeN(gamma_search="fine", objective=objective),
                NudgeM(), NudgeM(gamma_search="fine", objective=objective)):
        est = fit(est, p, base, rest, k)
        assert est.val_score_ >= est.val_score_before_ - 1e-12, est
        assert np.max(est.validation_curve_) >= est.val_score_ - 1e-12


@settings(**SETTINGS)
@given(problems(), OBJECTIVES, GAMMA_N)
def test_analytic_scores_equal_brute_force_scoring_of_the_transformed_vectors(prob, objective, gamma):
    p, base, rest = prob
    k = int(objective.split("@")[1])
    G = g_sums(len(p.X), p.tq, p.ta)
    with built_tables() as tables:
        est = fit(NudgeN(gamma=gamma, gamma_search="fine", objective=objective), p, base, rest, k)
    Y = n_solution(unit(p.X), G, gamma)
    want = brute_score(p, Y, objective)
    assert abs(est.val_score_ - want) < 1e-12
    C = tables[-1]  # every candidate's analytic score equals q·x of the transformed record
    s = C.values(np.arange(C.el_id.size), C.point_of_gamma(gamma))  # (validation rows have answers)
    np.testing.assert_allclose(s, (p.vq @ Y.T)[C.el_row, C.el_id], rtol=0, atol=1e-12)
    assert abs(est.val_score_before_ - brute_score(p, unit(p.X), objective)) < 1e-12
    est = fit(NudgeM(gamma=gamma, gamma_search="fine", objective=objective), p, base, rest, k)
    want = brute_score(p, unit(p.X) + gamma * unit(G), objective)
    assert abs(est.val_score_ - want) < 1e-12


@settings(**SETTINGS)
@given(problems(), OBJECTIVES)
def test_exact_curve_values_equal_brute_force_inside_every_piece(prob, objective):
    """Every computed piece has its value everywhere inside; a stretch the branch and bound left out
    (NaN) is below the optimum everywhere; the fine search's pieces are exact too, and its choice
    is never better than the exact optimum."""
    p, base, rest = prob
    k = int(objective.split("@")[1])
    G = g_sums(len(p.X), p.tq, p.ta)
    rng = np.random.default_rng(len(p.X))
    for est_cls, solution in ((NudgeN, lambda g: n_solution(unit(p.X), G, g)), (NudgeM, lambda g: unit(p.X) + g * unit(G))):
        exact = fit(est_cls(gamma_search="exact", objective=objective), p, base, rest, k)
        for s, e, value in exact.plateaus_[rng.permutation(len(exact.plateaus_))[:6]]:
            g = s + (e - s) * rng.uniform(0.05, 0.95)  # anywhere inside the piece
            score = brute_score(p, solution(g), objective)
            if np.isnan(value):
                assert score < exact.val_score_ - 1e-12
            else:
                assert abs(value - score) < 1e-12
        fine = fit(est_cls(gamma_search="fine", objective=objective), p, base, rest, k)
        assert fine.val_score_ <= exact.val_score_ + 1e-12
        assert abs(fine.val_score_ - brute_score(p, solution(fine.gamma_), objective)) < 1e-12
        known = np.isfinite(fine.plateaus_[:, 2])
        for s, e, value in fine.plateaus_[known][:4]:
            assert abs(value - brute_score(p, solution((s + e) / 2), objective)) < 1e-12


@settings(**SETTINGS)
@given(problems(), st.integers(1, 4))
def test_fine_mode_is_at_least_as_good_as_the_parity_grid_on_the_same_metric(prob, val_k):
    p, base, rest = prob
    parity = fit(NudgeN(val_k=val_k), p, base, rest, val_k)
    fine = fit(NudgeN(gamma_search="fine", objective=f"recall@{val_k}"), p, base, rest, val_k)
    assert fine.val_score_ >= parity.val_score_ - 1e-12
    assert fine.val_score_before_ == parity.val_score_before_


@settings(**SETTINGS)
@given(problems(), OBJECTIVES, st.booleans())
def test_pruning_changes_nothing(prob, objective, family_n):
    p, base, rest = prob
    k = int(objective.split("@")[1])
    make = (lambda: NudgeN(gamma_search="exact", objective=objective)) if family_n else (
        lambda: NudgeM(gamma_search="exact", objective=objective))
    with built_tables() as pruned_tables:
        pruned = fit(make(), p, base, rest, k)
    with built_tables(skip_pruning=True) as full_tables:
        full = fit(make(), p, base, rest, k)
    assert full_tables[-1].el_id.size >= pruned_tables[-1].el_id.size
    assert abs(full.gamma_ - pruned.gamma_) < 1e-9 and abs(full.val_score_ - pruned.val_score_) < 1e-12
    # the same curve wherever both computed it (what the search left out may differ)
    edges = np.unique(np.concatenate([full.plateaus_[:, :2].ravel(), pruned.plateaus_[:, :2].ravel()]))
    mid = (edges[:-1] + edges[1:]) / 2
    at = lambda pl: pl[np.clip(np.searchsorted(pl[:, 1], mid), 0, len(pl) - 1), 2]  # noqa: E731
    a, b = at(full.plateaus_), at(pruned.plateaus_)
    both = np.isfinite(a) & np.isfinite(b) & (np.diff(edges) > 1e-9)
    np.testing.assert_allclose(a[both], b[both], atol=1e-12)
