"""nudge-sync: improve a vector database's retrieval from user feedback, in place.

The library has two layers:

* the NUDGE core on plain numpy arrays (no I/O): :class:`NudgeN`, :class:`NudgeM`,
  :class:`Answers`, :class:`ValidationContext` and the shared metrics (:func:`evaluate`, ...);
* the sync engine over a :class:`connectors.VectorStore`: :func:`sync` and the operations
  :func:`rollback`, :func:`status`, :func:`history`, :func:`evaluate_store`, :func:`add_feedback`.

``nudge_sync.compat`` is a drop-in for the ``nudge-ft`` reference API, ``nudge_sync.synthetic``
generates a corpus and query log with a real semantic gap, and the ``nudge-sync`` command line is a
thin layer over all of this.
"""

from .core.answers import Answers
from .core.context import ValidationContext
from ._engine import sync
from ._errors import (
    DatabaseError,
    ExitCode,
    LockHeld,
    NothingToDo,
    NudgeSyncError,
    PartiallyWritten,
    RefusedInput,
    exit_code_for,
)
from .core.metrics import METRICS, evaluate, evaluate_per_query, metric_per_query, parse_metric, rank, search_exact
from .core.nudge import NudgeM, NudgeN
from ._ops import add_feedback, history, rollback, status
from ._ops import evaluate as evaluate_store
from ._options import SyncOptions, SyncReport

__version__ = "0.1.0"

__all__ = [
    "METRICS",
    "Answers",
    "DatabaseError",
    "ExitCode",
    "LockHeld",
    "NothingToDo",
    "NudgeM",
    "NudgeN",
    "NudgeSyncError",
    "PartiallyWritten",
    "RefusedInput",
    "SyncOptions",
    "SyncReport",
    "ValidationContext",
    "add_feedback",
    "evaluate",
    "evaluate_per_query",
    "evaluate_store",
    "exit_code_for",
    "history",
    "metric_per_query",
    "parse_metric",
    "rank",
    "rollback",
    "search_exact",
    "status",
    "sync",
]
