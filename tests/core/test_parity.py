"""Parity with the REAL reference: fixtures made once by nudge-ft 0.1.2 on torch 2.13 CPU
(bench/reference/make_parity_fixtures.py; manifest.json records versions and gammas).

Our parity mode must choose the same gamma and return the same vectors (within 1e-5) through the
drop-in API (``nudge_sync.compat``) and through the estimators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nudge_sync import NudgeM, NudgeN
from nudge_sync.compat import NUDGEM, NUDGEN

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parity"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CASES = sorted(MANIFEST["cases"])


def load(name):
    f = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    lists = lambda p, i: [f[i][f[p][j]:f[p][j + 1]].tolist() for j in range(len(f[p]) - 1)]  # noqa: E731
    return {"X": f["X"], "train": {"q_embs": f["tq"], "q_ans_indx": lists("tptr", "tidx")},
            "val": {"q_embs": f["vq"], "q_ans_indx": lists("vptr", "vidx")},
            "nontrain": f["nontrain"] if "nontrain" in f.files else None,
            "out": f["out"], "gamma": float(f["gamma"]), "method": str(f["method"])}


def test_fixtures_cover_what_the_issue_asks():
    cases = MANIFEST["cases"].values()
    assert MANIFEST["nudge-ft"] == "0.1.2" and MANIFEST["torch"].startswith("2.13")
    for method in "NM":
        mine = [c for c in cases if c["method"] == method]
        assert any(c["nontrain"] for c in mine) and any(not c["nontrain"] for c in mine)
        assert any(c["gamma"] > 0 for c in mine)
    assert any(c["gamma"] == 0 for c in cases)


@pytest.mark.parametrize("name", CASES)
def test_drop_in_api_matches_the_reference(name):
    case = load(name)
    model = NUDGEN() if case["method"] == "N" else NUDGEM()
    out = model.finetune_embeddings(case["X"], case["train"], case["val"], nontrain_embeddings=case["nontrain"])
    if case["method"] == "N":
        assert model.gamma_ == pytest.approx(case["gamma"], abs=1e-9)
    else:
        assert model.gamma_ == pytest.approx(case["gamma"], rel=1e-5, abs=1e-7)
    assert out.shape == case["out"].shape
    np.testing.assert_allclose(out, case["out"], atol=1e-5 * max(1.0, case["gamma"]), rtol=0)


@pytest.mark.parametrize("name", CASES)
def test_estimators_in_parity_mode_match_the_reference(name):
    case = load(name)
    est = (NudgeN() if case["method"] == "N" else NudgeM()).fit(
        case["X"], case["train"]["q_embs"], case["train"]["q_ans_indx"], case["val"]["q_embs"],
        case["val"]["q_ans_indx"],
        val_context=None if case["nontrain"] is None else _context(case))
    assert est.gamma_ == pytest.approx(case["gamma"], rel=1e-5, abs=1e-9)
    moved = est.moved_ids_
    np.testing.assert_allclose(est.moved_vectors_, case["out"][moved], atol=1e-5 * max(1.0, case["gamma"]), rtol=0)


def _context(case):
    from nudge_sync import ValidationContext

    n = len(case["X"])
    return ValidationContext.from_corpus(case["val"]["q_embs"], case["nontrain"], 1,
                                         ids=n + np.arange(len(case["nontrain"]), dtype=np.int64))
