"""Parity with the REAL reference: fixtures made once by nudge-ft 0.1.2 on torch 2.13 CPU
(bench/reference/make_parity_fixtures.py; manifest.json records versions, gammas and the command).

Our parity mode must choose the same gamma and return the same vectors, through every entry point: ``nudge_sync.compat.finetune_embeddings``,
the drop-in ``NUDGEN`` / ``NUDGEM`` classes, and the estimators (with the whole corpus as base, and
the production way: only the trained records as base plus a streamed validation context).

Tolerances. NUDGE-N: gamma is a grid value, equal to abs 1e-9; vectors (unit norm) within 1e-5.
NUDGE-M: gamma is an interval end point Δs/(Δg + 1e-8) that both sides compute in float32 from
their own matrix products (torch's BLAS vs numpy's), so it carries the products' float noise, a
few ulps of the scores, divided by the binding |Δg| of that end point. Measured on the fixtures:
|δγ|·|Δg|/(1 + γ) <= 9.2e-8 (m_dense_dup: |Δg| = 0.0041, |δγ| = 4.2e-5). So gamma must agree to
1e-6·(1 + γ)/|Δg| (about 16 ulps), and the vectors x = v + γ·Ĝ (|Ĝ| = 1) to 1e-5 plus that; given
the reference's gamma, they agree to 1e-5 absolute (``test_nudge_m_update_at_the_reference_gamma``).
Ties are not noise: exact copies score exactly alike on both sides, and the counts the sweep
makes at γ = 0 and at the chosen γ equal the reference's own (``test_nudge_m_sweep_counts_...``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from nudge_sync import NudgeM, NudgeN, ValidationContext
from nudge_sync.core.metrics import normalize_rows
from nudge_sync.compat import NUDGEM, NUDGEN, finetune_embeddings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parity"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CASES = sorted(MANIFEST["cases"])
VEC_ATOL = 1e-5


@cache
def load(name):
    f = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    src = np.load(FIXTURES / f"{f['inputs']}.npz", allow_pickle=False) if "inputs" in f.files else f
    lists = lambda p, i: [src[i][src[p][j]:src[p][j + 1]].tolist() for j in range(len(src[p]) - 1)]  # noqa: E731
    f32 = lambda k: src[k].astype(np.float32)  # noqa: E731  (float16-stored inputs: exact up-cast)
    return {"X": f32("X"), "train": {"q_embs": f32("tq"), "q_ans_indx": lists("tptr", "tidx")},
            "val": {"q_embs": f32("vq"), "q_ans_indx": lists("vptr", "vidx")},
            "nontrain": f32("nontrain") if "nontrain" in src.files else None,
            "out_rows": f["out_rows"], "out": f["out"], "gamma": float(f["gamma"]), "method": str(f["method"]),
            "val_k": int(f["val_k"])}


def gamma_tolerance(case, est=None) -> float:
    """NUDGE-M: the float32 noise of the end point (module doc); NUDGE-N: grid values, exact."""
    if case["method"] == "N" or case["gamma"] == 0:
        return 1e-9
    if est is None:
        est = finetune_embeddings(case["X"], case["train"], case["val"], case["nontrain"], method="M",
                                  return_estimator=True)[1]
    return max(1e-9, 1e-6 * (1 + case["gamma"]) / est._binding_slope)


def check_gamma(got, case, est=None):
    assert got == pytest.approx(case["gamma"], rel=0, abs=gamma_tolerance(case, est))


def check_output(full, case, atol=None, est=None):
    """``full``: our output for every row of X; the fixture stores the reference's rows ``out_rows``,
    and every other row is normalize(X) (asserted by the generator)."""
    if atol is None:
        atol = VEC_ATOL + (gamma_tolerance(case, est) if case["method"] == "M" else 0.0)
    assert full.shape == case["X"].shape and np.isfinite(full).all()
    np.testing.assert_allclose(full[case["out_rows"]], case["out"], atol=atol, rtol=0)
    rest = np.setdiff1d(np.arange(len(full)), case["out_rows"])
    np.testing.assert_allclose(full[rest], normalize_rows(case["X"][rest].astype(np.float64)), atol=VEC_ATOL, rtol=0)


def test_fixtures_cover_what_the_issue_asks():
    cases = MANIFEST["cases"].values()
    assert MANIFEST["nudge-ft"] == "0.1.2" and MANIFEST["torch"].startswith("2.13")
    for method in "NM":
        mine = [c for c in cases if c["method"] == method]
        assert any(c["nontrain"] for c in mine) and any(not c["nontrain"] for c in mine)
        assert any(c["multi_answer"] for c in mine) and any(not c["multi_answer"] for c in mine)
        assert any(c["gamma"] > 0 for c in mine) and any(c["gamma"] == 0 for c in mine)
        assert any(c["d"] == 384 and c["n"] >= 1000 for c in mine)  # the SciFact slice
        # dense labels (tens of answers per validation query), exact duplicates, the OOD protocol
        dense = [c for c in mine if c["val_answers_per_query"] >= 20 and c["duplicate_rows"] > 0]
        assert any(c["ood_split"] for c in dense) and any(not c["ood_split"] for c in dense)
    assert any(c["val_k"] > 1 for c in cases)
    assert sum((FIXTURES / f"{n}.npz").stat().st_size for n in CASES) < 4 * 2**20


@pytest.mark.parametrize("name", [n for n in CASES if "reference_sweep" in MANIFEST["cases"][n]])
def test_nudge_m_sweep_counts_like_the_reference(name):
    """The reference's own sweep (captured by the generator): our intervals give the same counts at
    γ = 0 and at the chosen γ. On the dense cases the degenerate intervals [0, 0] (an exact copy of
    an answer with a larger slope) decide: counting them at 0 would make γ = 0 win."""
    case, facts = load(name), MANIFEST["cases"][name]["reference_sweep"]
    _, est = finetune_embeddings(case["X"], case["train"], case["val"], case["nontrain"], method="M",
                                 return_estimator=True)
    n_pairs = sum(len(set(a)) for a in case["val"]["q_ans_indx"])
    assert round(est.val_score_before_ * n_pairs) == facts["count_at_0"]
    assert round(est.val_score_ * n_pairs) == facts["count_at_gamma"]
    if facts["degenerate_at_0"]:
        assert facts["count_at_0"] + facts["degenerate_at_0"] >= facts["count_at_gamma"]


@pytest.mark.parametrize("name", CASES)
def test_compat_function_matches_the_reference(name):
    case = load(name)
    out, est = finetune_embeddings(case["X"], case["train"], case["val"], case["nontrain"], method=case["method"],
                                   val_k=case["val_k"], return_estimator=True)
    check_gamma(est.gamma_, case, est)
    if case["method"] == "N":
        assert est.objective_ == ("hit@1" if case["val_k"] == 1 else f"recall@{case['val_k']}")
    else:
        assert est.objective_ == "pair_hit@1"  # per (query, answer) pair, as the reference counts
    check_output(out, case, est=est)


@pytest.mark.parametrize("name", CASES)
def test_drop_in_classes_match_the_reference(name):
    case = load(name)
    if case["method"] == "N":
        model = NUDGEN()
        out = model.finetune_embeddings(case["X"], case["train"], case["val"], nontrain_embeddings=case["nontrain"],
                                        val_k=case["val_k"])
    else:
        model = NUDGEM()
        out = model.finetune_embeddings(case["X"], case["train"], case["val"], nontrain_embeddings=case["nontrain"])
    check_gamma(model.gamma_, case, model.estimator_)
    assert out.dtype == np.float32
    check_output(out, case, est=model.estimator_)


def _estimator(case):
    return NudgeN(val_k=case["val_k"]) if case["method"] == "N" else NudgeM()


def _nontrain_context(case, k):
    n = len(case["X"])
    return ValidationContext.from_corpus(case["val"]["q_embs"], case["nontrain"], k,
                                         ids=n + np.arange(len(case["nontrain"]), dtype=np.int64))


@pytest.mark.parametrize("name", CASES)
def test_estimator_on_the_whole_corpus_matches_the_reference(name):
    case = load(name)
    k = case["val_k"]
    est = _estimator(case).fit(case["X"], case["train"]["q_embs"], case["train"]["q_ans_indx"],
                               case["val"]["q_embs"], case["val"]["q_ans_indx"],
                               val_context=None if case["nontrain"] is None else _nontrain_context(case, k))
    check_gamma(est.gamma_, case, est)
    assert np.isin(est.moved_ids_, case["out_rows"]).all()
    check_output(est.transform(normalize_rows(case["X"].astype(np.float64)).astype(np.float32)), case, est=est)


@pytest.mark.parametrize("name", CASES)
def test_estimator_with_trained_base_and_streamed_context_matches_the_reference(name):
    """Production shape: only records that answer a training query are fitted; every other record
    (untrained rows of X and the nontrain set) reaches the γ search through a validation context."""
    case = load(name)
    X, k = case["X"], case["val_k"]
    base = np.unique(np.concatenate([np.asarray(a, np.int64) for a in case["train"]["q_ans_indx"]]))
    ctx = ValidationContext.from_corpus(case["val"]["q_embs"], X, k, exclude=base, block_size=97)
    if case["nontrain"] is not None:
        ctx = ctx.merge(_nontrain_context(case, k), k)
    est = _estimator(case).fit(X[base], case["train"]["q_embs"], case["train"]["q_ans_indx"],
                               case["val"]["q_embs"], case["val"]["q_ans_indx"], base_ids=base, val_context=ctx)
    check_gamma(est.gamma_, case, est)
    check_output(est.transform(normalize_rows(X.astype(np.float64)).astype(np.float32)), case, est=est)


@pytest.mark.parametrize("name", [n for n in CASES if MANIFEST["cases"][n]["method"] == "M"])
def test_nudge_m_update_at_the_reference_gamma(name):
    """With the reference's own gamma the NUDGE-M vectors agree to 1e-5 absolute, whatever gamma."""
    case = load(name)
    out = finetune_embeddings(case["X"], case["train"], case["val"], case["nontrain"], method="M",
                              gamma=case["gamma"])
    check_output(out, case, atol=VEC_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_the_numpy_mirror_reproduces_the_reference(name):
    """tests/core/_mirror.py is the dense oracle of the property and estimator tests (random
    shapes, ties, NaN hazards: what a few fixtures cannot cover). Anchor it to the real reference."""
    from ._mirror import ref_nudge_m, ref_nudge_n

    case = load(name)
    args = (case["X"], case["train"]["q_embs"], case["train"]["q_ans_indx"], case["val"]["q_embs"],
            case["val"]["q_ans_indx"], case["nontrain"])
    if case["method"] == "N":
        out, gamma, _ = ref_nudge_n(*args, val_k=case["val_k"])
    else:
        out, gamma = ref_nudge_m(*args)  # float32 intervals, Δs / (Δg + 1e-8), like torch
    check_gamma(gamma, case)
    check_output(np.asarray(out), case)
