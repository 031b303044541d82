"""Errors of the sync engine and the exit codes the CLI maps them to.

    NudgeSyncError (exit 1 unless a subclass says otherwise)
    ├── NothingToDo      exit 3  the log has nothing usable, or a gate kept the run from writing
    ├── RefusedInput     exit 4  input nudge-sync will not use (dimension, NaN, metric, options)
    ├── LockHeld         exit 5  another run holds the collection's lock
    └── DatabaseError    exit 6  the database is unreachable, refused us, lacks the collection,
        │                        or a write could not be verified; a run that fails after writing
        │                        first puts back what it wrote ("the collection is as it was")
        └── PartiallyWritten
                         exit 7  a run failed after writing and could not put back what it wrote
                                 (the database stayed unreachable): the state says exactly what may
                                 be written; rerun, or `nudge-sync rollback --run ID`, completes it

Connector errors (``connectors.ConnectorError``) are mapped by :func:`exit_code_for`.
"""

from __future__ import annotations

from enum import IntEnum

import connectors
from connectors import redact


class ExitCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1
    USAGE_ERROR = 2  #: bad command line (click's own code)
    NOTHING_TO_DO = 3  #: nothing usable / gated: the database was not written
    REFUSED_INPUT = 4
    LOCK_HELD = 5
    DATABASE_ERROR = 6
    PARTIALLY_WRITTEN = 7  #: some of a failed run's vectors may be written: rerun or roll it back
    STOPPED_IN_RUN = 8  #: `watch` only: stopped by a signal inside a run, which put back what it wrote


class NudgeSyncError(Exception):
    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, *args: object):
        # messages may quote a database's answer: never with a configured secret in it
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class NothingToDo(NudgeSyncError):
    """Nothing was written because there is nothing to learn from or a gate said no."""

    exit_code = ExitCode.NOTHING_TO_DO


class RefusedInput(NudgeSyncError, ValueError):
    """The collection, log or options are not something NUDGE can serve safely."""

    exit_code = ExitCode.REFUSED_INPUT


class LockHeld(NudgeSyncError):
    exit_code = ExitCode.LOCK_HELD


class DatabaseError(NudgeSyncError):
    exit_code = ExitCode.DATABASE_ERROR


class PartiallyWritten(DatabaseError):
    """A run failed after writing some vectors and could not put them back."""

    exit_code = ExitCode.PARTIALLY_WRITTEN


_CONNECTOR_CODES: tuple[tuple[type[Exception], ExitCode], ...] = (
    (connectors.InvalidURI, ExitCode.USAGE_ERROR),
    (connectors.MissingDependency, ExitCode.USAGE_ERROR),
    (connectors.InvalidVectors, ExitCode.REFUSED_INPUT),
    (connectors.UnknownIds, ExitCode.REFUSED_INPUT),
    (connectors.UnsupportedCollection, ExitCode.REFUSED_INPUT),
    (connectors.ConnectionFailed, ExitCode.DATABASE_ERROR),
    (connectors.CollectionNotFound, ExitCode.DATABASE_ERROR),
    (connectors.WriteFailed, ExitCode.DATABASE_ERROR),
    (connectors.ConnectorError, ExitCode.DATABASE_ERROR),
)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The documented exit code for an exception raised by the library."""
    if isinstance(exc, NudgeSyncError):
        return exc.exit_code
    for cls, code in _CONNECTOR_CODES:
        if isinstance(exc, cls):
            return code
    return ExitCode.INTERNAL_ERROR
