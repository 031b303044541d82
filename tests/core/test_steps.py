"""Per-record steps by label count (NudgeN(step_alpha=...)) and the safe selection among variants."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudge_sync.core.metrics import evaluate, search_exact
from nudge_sync.core.nudge import NudgeN
from nudge_sync.core.selection import bootstrap_margin, choose
from nudge_sync.core.steps import log_scales
from nudge_sync.synthetic import make_corpus

from ._data import answers, make_problem

SETTINGS = dict(max_examples=int(os.environ.get("NUDGE_CORE_EXAMPLES", "30")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _fit(p, **kw):
    est = NudgeN(gamma_search="fine", objective="ndcg@10", **kw)
    return est.fit(p.X, p.tq, answers(p.ta), p.vq, answers(p.va))


def _val_ndcg(p, est) -> float:
    Y = est.transform(p.X / np.linalg.norm(p.X, axis=1, keepdims=True))
    ids, _ = search_exact(p.vq, Y, 10)
    return evaluate(ids, answers(p.va), ["ndcg@10"])["ndcg@10"]


def _one_answer_each(p):
    """The same problem with every training query answering one distinct record: n_i = 1 for all."""
    ta = [[i] for i in range(len(p.ta))]
    return type(p)(p.X, p.tq, ta, p.vq, p.va, [[1.0]] * len(ta), p.vg)


@given(seed=st.integers(0, 10_000), gamma=st.floats(1e-6, 4.0), alpha=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
@settings(**SETTINGS)
def test_equal_counts_reduce_to_nudge_n_bit_for_bit(seed, gamma, alpha):
    # every record answers as many training queries as the median: γ_i = γ, so plain NUDGE-N
    p = _one_answer_each(make_problem(seed, n=40, nt=20))
    plain = _fit(p, gamma=gamma)
    steps = _fit(p, gamma=gamma, step_alpha=alpha)
    assert steps.variant_ == "count-steps" and steps.step_alpha_ == alpha
    np.testing.assert_array_equal(steps.moved_ids_, plain.moved_ids_)
    assert steps.moved_vectors_.tobytes() == plain.moved_vectors_.tobytes()


@given(seed=st.integers(0, 10_000))
@settings(**SETTINGS)
def test_plain_nudge_n_is_the_default_and_parity_mode_stays_plain_nudge_n(seed):
    p = make_problem(seed)
    a, b = _fit(p), _fit(p, step_alpha=0.0)
    assert NudgeN().step_alpha == 0.0
    assert a.gamma_ == b.gamma_ and a.variant_ == b.variant_ and a.moved_vectors_.tobytes() == b.moved_vectors_.tobytes()
    # parity mode is the reference: the default α changes nothing there
    par, plain = (NudgeN(**kw).fit(p.X, p.tq, answers(p.ta), p.vq, answers(p.va)) for kw in ({}, {"step_alpha": 0.0}))
    assert par.variant_ == "nudge-n" and par.gamma_ == plain.gamma_
    assert par.moved_vectors_.tobytes() == plain.moved_vectors_.tobytes()


@given(seed=st.integers(0, 10_000), gamma=st.floats(1e-3, 2.0), alpha=st.sampled_from([0.25, 0.75, 1.0]))
@settings(**SETTINGS)
def test_steps_follow_label_counts(seed, gamma, alpha):
    # each record turns toward Ĝ by its own γ_i = γ (n_i / median n)^α, or saturates
    p = make_problem(seed, nt=40)
    est = _fit(p, gamma=gamma, step_alpha=alpha)
    counts = np.bincount(np.concatenate([np.asarray(a) for a in p.ta]), minlength=p.X.shape[0])
    V = p.X / np.linalg.norm(p.X, axis=1, keepdims=True)
    moved = est.moved_ids_
    # the median over every record a training query answers (those that stay put included)
    g_i = np.minimum(4.0, gamma * np.exp(alpha * log_scales(counts[counts > 0])))[np.searchsorted(np.flatnonzero(counts), moved)]
    step2 = ((est.moved_vectors_.astype(np.float64) - V[moved]) ** 2).sum(1)
    assert np.all(step2 <= g_i * (1 + 1e-4) + 1e-5)  # ‖Δ‖² <= γ_i, equality unless saturated


@given(seed=st.integers(0, 10_000), alpha=st.sampled_from(["auto", 0.5, 1.0]))
@settings(**SETTINGS)
def test_reported_validation_score_is_the_moved_vectors(seed, alpha):
    # the shared table's pruning must keep every record that can reach a top 10 at (α, γ)
    p = make_problem(seed, n=80, nt=60, nv=30)
    est = _fit(p, step_alpha=alpha)
    assert est.val_score_ == pytest.approx(_val_ndcg(p, est), abs=1e-9)


def _dense():
    d = make_corpus(n_records=1500, dim=64, n_queries=1400, labels="dense", seed=3)
    split = {s: d.rows(s) for s in ("train", "val")}
    return d, split


def test_auto_chooses_count_steps_on_dense_labels_and_reports_why():
    d, sp = _dense()
    t, v = sp["train"], sp["val"]
    est = NudgeN(gamma_search="fine", objective="ndcg@10", step_alpha="auto").fit(
        d.vectors, d.queries[t], answers([d.answers[r] for r in t]), d.queries[v], answers([d.answers[r] for r in v]))
    assert est.variant_ == "count-steps" and est.step_alpha_ > 0
    assert est.selection_gain_ > est.selection_margin_ > 0
    assert est.variant_scores_[est.step_alpha_] > est.variant_scores_[0.0]


def test_auto_refuses_on_a_validation_set_of_pure_noise():
    # validation answers drawn at random: no variant can truly help, whatever validation says
    d, sp = _dense()
    t, v = sp["train"], sp["val"]
    rng = np.random.default_rng(0)
    noise = [sorted(rng.choice(d.vectors.shape[0], size=len(d.answers[r]), replace=False).tolist()) for r in v]
    est = NudgeN(gamma_search="fine", objective="ndcg@10", step_alpha="auto").fit(
        d.vectors, d.queries[t], answers([d.answers[r] for r in t]), d.queries[v], answers(noise))
    assert est.variant_ == "nudge-n" and est.step_alpha_ == 0.0
    assert est.selection_gain_ <= est.selection_margin_ or est.selection_gain_ <= 0


def test_bootstrap_margin_and_choice():
    rng = np.random.default_rng(1)
    base = rng.random(400)
    gain, margin = bootstrap_margin(base, base + 0.05)
    assert gain == pytest.approx(0.05) and margin == 0.0  # no noise at all
    noisy = base + rng.normal(0, 0.3, 400)
    gain, margin = bootstrap_margin(base, noisy)
    assert margin > 0.02  # ~1.65 x 0.3 / 20
    assert choose(base, {0.5: noisy - noisy.mean() + base.mean()})[0] is None
    assert choose(base, {0.5: base + 0.2, 1.0: base + 0.1})[0] == 0.5


def test_step_alpha_checks():
    p = make_problem(0)
    for bad in (-1, "fast", float("nan"), True, 5):
        with pytest.raises(ValueError, match="step_alpha"):
            _fit(p, step_alpha=bad)
    with pytest.raises(ValueError, match="parity"):
        NudgeN(step_alpha=0.5).fit(p.X, p.tq, answers(p.ta), p.vq, answers(p.va))
