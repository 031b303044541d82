"""What a run that failed part-way leaves behind: the put-back of what it wrote
(``nudge_sync.engine.writer.undo``), and the error that says whether that worked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from connectors import ConnectorError, RecordId

from .context import RunContext
from .errors import DatabaseError, NudgeSyncError, PartiallyWritten
from .options import SyncReport
from .state import Original, SyncState
from .writer import BatchWriter, undo


@contextmanager
def undo_on_failure(ctx: RunContext, writer: BatchWriter, previous: dict[RecordId, Original],
                    planned: int) -> Iterator[None]:
    """Around the write, verify and record steps: an error after the first write attempt puts back
    what the run wrote, and is raised as the error that says whether that worked."""
    try:
        yield
    except Exception as exc:
        if not writer.attempted:
            raise
        raise after_failed_write(writer, previous, exc, ctx.report, ctx.state, planned) from None


def after_failed_write(writer: BatchWriter, previous: dict[RecordId, Original], cause: Exception,
                        report: SyncReport, state: SyncState, planned: int) -> BaseException:
    """Put back what the failed run wrote; the error to raise says whether that worked."""
    why = str(cause) or type(cause).__name__
    attempted = len(writer.attempted)
    try:
        put_back = undo(writer, previous)
    except Exception as failed:
        report.status = "partial"
        report.reason = f"{why}; putting back what the run wrote failed too: {failed}"
        report.counts["may_be_written"] = attempted
        _try_put_run(state, report)
        error: BaseException = PartiallyWritten(
            f"partially written: {attempted} of {planned} vectors of run {report.run_id} may be written ({why}; "
            f"putting them back failed too: {failed}); rerun, or `nudge-sync rollback --run {report.run_id}`, "
            "completes it")
    else:
        report.status = "undone"
        report.reason = f"{why}; the {put_back} vectors it had written were put back"
        report.counts["put_back"] = put_back
        _try_put_run(state, report)
        if not isinstance(cause, (NudgeSyncError, ConnectorError)):
            return cause  # a bug: put back, then reported as what it is
        error = DatabaseError(f"{why}; the collection is as it was before this run "
                              f"({put_back} vectors it had written were put back)")
    error.report = report  # type: ignore[attr-defined]
    return error


def _try_put_run(state: SyncState, report: SyncReport) -> None:
    report.finished = time.time()
    try:
        state.put_run(report.run_id, report.to_dict())
    except Exception:  # the database that failed the run may refuse this too; the error says what happened
        pass
