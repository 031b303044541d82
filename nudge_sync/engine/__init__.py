"""The sync engine: one run, rollback and the other operations over a :class:`connectors.VectorStore`.

It sits between the NUDGE core (pure numpy, ``nudge_sync.core.answers`` ...) and the command line
(``nudge_sync.cli``): it imports the core and the connectors' public API, never the command line.
See ARCHITECTURE.md for the rooms and the path of one run through them.
"""

from .errors import (
    DatabaseError,
    ExitCode,
    LockHeld,
    NothingToDo,
    NudgeSyncError,
    PartiallyWritten,
    RefusedInput,
    exit_code_for,
)
from .ops import add_feedback, evaluate, history, rollback, status
from .options import SyncOptions, SyncReport
from .run import sync

__all__ = [
    "DatabaseError",
    "ExitCode",
    "LockHeld",
    "NothingToDo",
    "NudgeSyncError",
    "PartiallyWritten",
    "RefusedInput",
    "SyncOptions",
    "SyncReport",
    "add_feedback",
    "evaluate",
    "exit_code_for",
    "history",
    "rollback",
    "status",
    "sync",
]
