"""What a run leaves behind after its writes: the recording phase of a run that wrote, and the
put-back of one that failed part-way (``nudge_sync.engine.writer.undo``), with the error that says which.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from connectors import ConnectorError, RecordId

from .classify import ADOPTED, VANISHED, Verdict
from .context import RunContext
from .errors import DatabaseError, NudgeSyncError, PartiallyWritten
from .options import SyncReport
from .state import Original, SyncState, fingerprint
from .writer import BatchWriter, undo


def record_writes(ctx: RunContext, writer: BatchWriter, landed: dict[RecordId, np.ndarray],
                  originals: dict[RecordId, Original], verdicts: dict[RecordId, Verdict]) -> None:
    """The recording phase: fingerprints of what landed, adoptions, entries the load settled,
    records gone. One probe after each state write."""
    state, report = ctx.state, ctx.report
    ours = []
    for i, stored in landed.items():
        base = originals.get(i) or Original(i, writer.before[i], None, False, None)
        ours.append(Original(i, base.vector, fingerprint(stored), writer.attempted[i].nudged_after, report.run_id))
    # saved as pending with these very vectors: only the meta changes
    state.put_originals(ours, vectors_stored=True)
    ctx.emit.probe("run.record")
    touched = set(writer.attempted) | set(writer.adopted) | set(writer.vanished)
    new_vectors = [Original(i, v, fingerprint(v), False, None) for i, v in writer.adopted.items()]
    new_vectors += [v.entry for i, v in verdicts.items() if v.kind == ADOPTED and i not in touched and v.entry]
    if new_vectors:
        state.put_originals(new_vectors)
        ctx.emit.probe("run.record")
    settled = [v.entry for i, v in verdicts.items()
               if v.changed and v.kind not in (ADOPTED, VANISHED) and i not in touched and v.entry]
    if settled:
        state.put_originals(settled, vectors_stored=True)
        ctx.emit.probe("run.record")
    gone = set(writer.vanished) | {i for i, v in verdicts.items() if v.kind == VANISHED}
    if gone:
        state.delete_originals(sorted(gone, key=str))
        ctx.emit.probe("run.record")


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
