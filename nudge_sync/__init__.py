"""nudge-sync: improve a vector database's retrieval from user feedback, in place.

Three rooms, each importing only the ones before it (ARCHITECTURE.md; import-linter checks it):

* the NUDGE core on plain numpy arrays (no I/O): :class:`NudgeN`, :class:`NudgeM`,
  :class:`Answers`, :class:`ValidationContext` and the shared metrics (:func:`evaluate`, ...);
* the sync engine (``nudge_sync.engine``) over a :class:`connectors.VectorStore`: :func:`sync` and
  the operations :func:`rollback`, :func:`status`, :func:`history`, :func:`evaluate_store`,
  :func:`add_feedback`;
* the ``nudge-sync`` command line (``nudge_sync.cli``), a thin layer over the engine.

``nudge_sync.compat`` is a drop-in for the ``nudge-ft`` reference API, and ``nudge_sync.synthetic``
generates a corpus and query log with a real semantic gap.
"""

from .core.answers import Answers
from .core.context import ValidationContext
from .engine import (
    DatabaseError,
    ExitCode,
    LockHeld,
    NothingToDo,
    NudgeSyncError,
    PartiallyWritten,
    RefusedInput,
    SyncOptions,
    SyncReport,
    add_feedback,
    exit_code_for,
    history,
    rollback,
    status,
    sync,
)
from .engine import evaluate as evaluate_store
from .core.metrics import METRICS, evaluate, evaluate_per_query, metric_per_query, parse_metric, rank, search_exact
from .core.nudge import NudgeM, NudgeN

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
