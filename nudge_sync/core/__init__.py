"""The NUDGE core: non-parametric embedding fine-tuning on plain numpy arrays, no I/O.

The estimators (:class:`NudgeN`, :class:`NudgeM`: constructor stores parameters, ``fit`` learns,
learned state in attributes ending in ``_``), the labels they take (:class:`Answers`), a
validation context computed elsewhere (:class:`ValidationContext`), and the retrieval metrics
shared with the sync engine. Nothing here imports a database client, click, the engine or the
connectors (an import-linter contract checks it).

Inside: ``answers`` / ``answer_ranks`` (labels), ``metrics`` (top-k, metrics, the tie rule),
``context``, ``checks`` (argument checks), ``estimator`` (what both families share) and ``nudge``
(the families), and the γ search: ``gamma`` (curves, the candidate table's type), ``candidates``
(building and pruning it), ``curve`` / ``cells`` / ``leaves`` / ``ragged`` (the exact curve),
``gamma_search`` (grid, then refine), ``steps`` / ``step_search`` (per-record steps by label
count, ``NudgeN(step_alpha=...)``), ``selection`` (the safe choice among variants), ``m_parity``
(the reference's NUDGE-M sweep); ``compat``
(the nudge-ft drop-in behind :mod:`nudge_sync.compat`).
"""

from .answers import Answers
from .context import ValidationContext
from .metrics import METRICS, evaluate, evaluate_per_query, metric_per_query, parse_metric, rank, search_exact
from .nudge import NudgeM, NudgeN

__all__ = ["METRICS", "Answers", "NudgeM", "NudgeN", "ValidationContext", "evaluate", "evaluate_per_query",
           "metric_per_query", "parse_metric", "rank", "search_exact"]
