"""Fitting NUDGE for a run and scoring it on validation (DESIGN.md section 3, step 7): the bridge
from the engine's feedback and id space to the core's arrays."""

from __future__ import annotations

import numpy as np

from ..core.answers import Answers
from ..core.context import ValidationContext
from ..core.metrics import evaluate
from ..core.nudge import NudgeM, NudgeN
from .feedback import Feedback
from .options import SyncOptions
from .views import IdSpace

#: Metrics reported for validation before/after (the objective is added if missing).
REPORT_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@1")

#: Points of the validation curve kept in a report (the exact sweep can have thousands of pieces;
#: run records live in the state collection, where a record's size is bounded).
CURVE_POINTS = 200


def estimator(opts: SyncOptions) -> NudgeN | NudgeM:
    common = dict(gamma=opts.gamma, gamma_search=opts.gamma_search, objective=opts.objective)
    return NudgeN(**common) if opts.method == "nudge-n" else NudgeM(**common)


def curve(gammas: np.ndarray, scores: np.ndarray, chosen: float) -> dict[str, list[float]]:
    """The validation curve, thinned to CURVE_POINTS (keeping its best point and the chosen gamma)."""
    g, v = np.asarray(gammas, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    order = np.argsort(g, kind="stable")
    g, v = g[order], v[order]
    if len(g) > CURVE_POINTS:
        keep = set(np.linspace(0, len(g) - 1, CURVE_POINTS).round().astype(int).tolist())
        keep |= {int(np.argmax(v)), int(np.argmin(np.abs(g - chosen)))}
        idx = sorted(keep)
        g, v = g[idx], v[idx]
    return {"gamma": [round(float(x), 6) for x in g], "score": [round(float(x), 6) for x in v]}


def answers_of(feedback: Feedback, rows: np.ndarray, ids: IdSpace) -> Answers:
    """The answers of ``rows`` of the feedback, as positions in ``ids``."""
    positions = [ids.add(feedback.answers[r]).tolist() for r in rows]
    return Answers.from_lists(positions, grades=[feedback.grades[r] for r in rows])


def metric_k(spec: str) -> int:
    """The cut-off of a metric spec ("ndcg@10" -> 10; 10 when it names none)."""
    _, _, k = spec.partition("@")
    return int(k) if k.isdigit() else 10


def normalized(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def validation_metrics(queries: np.ndarray, vectors: np.ndarray, context: ValidationContext, answers: Answers,
                       objective: str) -> dict[str, float]:
    """The report's metrics of ``queries`` ranked against ``vectors`` (the moving records) merged
    with the context of the records that do not move."""
    k = context.ids.shape[1]
    ranked = ValidationContext.from_corpus(queries, vectors, k, ids=np.arange(len(vectors), dtype=np.int64),
                                           normalize=False).merge(context)
    names = list(dict.fromkeys([*REPORT_METRICS, objective]))
    return {m: round(float(v), 6) for m, v in evaluate(ranked.ids, answers, names).items()}
