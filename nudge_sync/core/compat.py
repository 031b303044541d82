"""nudge-ft compatible API: switch from the reference in one line.

    from nudge.nudge import NUDGEN, NUDGEM          # reference (torch)
    from nudge_sync.compat import NUDGEN, NUDGEM     # this package (numpy)

Same arguments, same ``train_set`` / ``val_set`` dictionaries (``{"q_embs": (n, d) array,
"q_ans_indx": [[row, ...], ...]}``, optionally ``"q_ans_indx_rel"`` with aligned grades), same
result: every row of ``embeddings``, L2-normalised, with the tuned rows moved. γ is chosen exactly
as nudge-ft 0.1.2 chooses it (parity mode) unless asked otherwise.

Differences, all deliberate fixes of the reference's hazards (NUDGE.md §1.5): validation queries
with an empty answer list are dropped instead of turning the accuracy into NaN (which made the
reference silently return γ = 0); NUDGE-M divides exactly instead of by Δg + 1e-8; no NaN rows
for records whose G is parallel to them; ``nontrain_embeddings`` smaller than ``val_k`` work;
``device`` and ``val_batch_size`` are accepted and ignored (memory is bounded automatically).
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

from .answers import Answers
from .context import ValidationContext
from .m_parity import rounded_topk
from .metrics import normalize_rows, parse_metric
from .checks import check_scalar
from .nudge import NudgeM, NudgeN

__all__ = ["NUDGEN", "NUDGEM", "QueriesAnswersDict", "finetune_embeddings"]

#: Rows per block when normalising the returned corpus copy.
NORMALIZE_BLOCK = 2_048


class QueriesAnswersDict(TypedDict):
    q_embs: np.ndarray
    q_ans_indx: list[list[int]]


def _split(qa: Any, name: str, n_rows: int) -> tuple[np.ndarray, Answers]:
    if not isinstance(qa, dict) or "q_embs" not in qa or "q_ans_indx" not in qa:
        raise ValueError(f"{name} must be a dict with keys 'q_embs' and 'q_ans_indx'")
    q = np.asarray(qa["q_embs"])
    lists = [list(np.asarray(r).reshape(-1)) for r in qa["q_ans_indx"]]
    if q.ndim != 2 or len(lists) != q.shape[0]:
        raise ValueError(f"{name}: q_embs has shape {q.shape} but q_ans_indx has {len(lists)} rows")
    rel = qa.get("q_ans_indx_rel")
    grades = None
    if rel is not None:
        grades = [list(np.asarray(r, dtype=np.float64).reshape(-1)) for r in rel]
    ans = Answers.from_lists(lists, grades)
    if ans.ids.size and ans.ids.max() >= n_rows:
        raise ValueError(f"{name}: answer index {int(ans.ids.max())} is out of range for {n_rows} embeddings")
    return q, ans


def finetune_embeddings(
    data_embs: np.ndarray,
    train_set: QueriesAnswersDict,
    val_set: QueriesAnswersDict,
    nontrain_embeddings: np.ndarray | None = None,
    *,
    method: str = "N",
    gamma: float | None = None,
    val_k: int = 1,
    gamma_search: str = "parity",
    objective: str = "hit@1",
    return_estimator: bool = False,
    **params: Any,
):
    """Fine-tune ``data_embs`` with NUDGE-N (``method="N"``) or NUDGE-M (``"M"``).

    Returns all rows of ``data_embs``, L2-normalised, with the moved rows replaced (NUDGE-M rows
    are not unit-norm: retrieve by dot product). ``nontrain_embeddings`` are records that answer
    no training or validation query: they only compete during validation (scored by cosine) and
    are not returned. Extra ``params`` go to :class:`NudgeN` / :class:`NudgeM`.
    With ``return_estimator=True`` returns ``(embeddings, fitted estimator)``.
    """
    X = np.asarray(data_embs)
    if X.ndim != 2:
        raise ValueError(f"data_embs must be 2-d (n, d), got shape {X.shape}")
    n = X.shape[0]
    tq, ta = _split(train_set, "train_set", n)
    vq, va = _split(val_set, "val_set", n)
    m = str(method).upper().replace("NUDGE-", "").replace("NUDGE", "")
    if m == "N":
        est = NudgeN(gamma=gamma, gamma_search=gamma_search, objective=objective, val_k=val_k, **params)
        k = val_k if gamma_search == "parity" else parse_metric(objective)[1]
    elif m == "M":
        est = NudgeM(gamma=gamma, gamma_search=gamma_search, objective=objective, **params)
        k = 1 if gamma_search == "parity" else parse_metric(objective)[1]
    else:
        raise ValueError(f"method must be 'N' or 'M', got {method!r}")
    ctx = None
    if nontrain_embeddings is not None:
        nt = np.asarray(nontrain_embeddings)
        if nt.ndim != 2 or nt.shape[1] != X.shape[1]:
            raise ValueError(f"nontrain_embeddings must be (m, {X.shape[1]}), got shape {nt.shape}")
        if nt.shape[0]:
            vqc = vq.astype(np.result_type(vq.dtype, nt.dtype, np.float32), copy=False)
            nt_ids = n + np.arange(nt.shape[0], dtype=np.int64)
            if m == "M" and gamma_search == "parity":  # exact copies must tie exactly (see _m_parity)
                ctx = ValidationContext(*rounded_topk(vqc, nt, int(k), nt_ids))
            else:
                ctx = ValidationContext.from_corpus(vqc, nt, int(k), ids=nt_ids)
    est.fit(X, tq, ta, vq, va, val_context=ctx)
    dtype = X.dtype if X.dtype.kind == "f" else np.float32
    # the returned copy is normalised block by block: never a float64 copy of the whole corpus, and
    # blocks small enough (2,048 rows) that their float64 temporaries stay a few MB
    out = np.array(X, dtype=dtype, copy=True)
    for start in range(0, n, NORMALIZE_BLOCK):
        out[start : start + NORMALIZE_BLOCK] = normalize_rows(out[start : start + NORMALIZE_BLOCK])
    if est.moved_ids_.size:
        out[est.moved_ids_] = est.moved_vectors_
    return (out, est) if return_estimator else out


class _Compat:
    def __init__(self, device: Any = None) -> None:
        self.device = device  # accepted for drop-in compatibility; numpy runs on the CPU


class NUDGEN(_Compat):
    """Drop-in for ``nudge.NUDGEN`` (nudge-ft 0.1.2)."""

    def finetune_embeddings(
        self,
        embeddings: np.ndarray,
        train_set: QueriesAnswersDict,
        val_set: QueriesAnswersDict,
        nontrain_embeddings: np.ndarray | None = None,
        val_batch_size: int = 256,
        val_k: int = 1,
        gamma: Any = None,
    ) -> np.ndarray:
        g = None if gamma is None else check_scalar(gamma, "gamma")
        out, est = finetune_embeddings(embeddings, train_set, val_set, nontrain_embeddings, method="N",
                                       gamma=g, val_k=val_k, return_estimator=True)
        self.estimator_ = est
        self.gamma_ = est.gamma_
        return out


class NUDGEM(_Compat):
    """Drop-in for ``nudge.NUDGEM`` (nudge-ft 0.1.2)."""

    def finetune_embeddings(
        self,
        embeddings: np.ndarray,
        train_set: QueriesAnswersDict,
        val_set: QueriesAnswersDict,
        nontrain_embeddings: np.ndarray | None = None,
        val_batch_size: int = 256,
        gamma: Any = None,
    ) -> np.ndarray:
        g = None if gamma is None else check_scalar(gamma, "gamma")
        out, est = finetune_embeddings(embeddings, train_set, val_set, nontrain_embeddings, method="M",
                                       gamma=g, return_estimator=True)
        self.estimator_ = est
        self.gamma_ = est.gamma_
        return out
