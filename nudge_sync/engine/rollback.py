"""The steps of ``rollback`` (read_state -> write -> verify -> record): write back the original
vector of every record whose stored vector nudge-sync wrote. The command around them (checks, lock,
events) is ``nudge_sync.engine.restore``.

Every state entry is classified against the vector stored now (``nudge_sync.engine.classify``): records
holding our vector are restored, records already holding their original (a rollback killed before
it could record so) are only recorded, records someone else wrote are adopted and left alone. The
restores go through the same write protocol as a run's writes (``nudge_sync.engine.writer``): each
batch marked as being restored in the state (pending, target = the original), re-read, written;
then read back (and corrected on a re-normalising database), then recorded -- so a rollback killed
anywhere and run again finishes the job and counts right.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from connectors import ConnectorError, RecordId

from .classify import NUDGED, RESTORED, VANISHED
from .context import Context
from .errors import NudgeSyncError, PartiallyWritten
from .state import Original, SyncState
from .verdicts import load_state, reembedded
from .writer import BatchWriter, WriteItem, max_abs


def known_run(state: SyncState, run_id: str) -> bool:
    """In the history, or named by a state entry: a run that lost its database before it could
    record itself left its pending writes under its id (its exit-7 message names it)."""
    if run_id in {r.get("run_id") for r in state.runs()}:
        return True
    return any(run_id in (o.run, o.target_run) for o in state.originals())


def rollback_steps(ctx: Context, run_id: str | None, dry_run: bool, broken: dict[str, Any] | None) -> dict[str, Any]:
    """read_state -> write -> verify -> record; the rollback's report."""
    state, info, rid = ctx.state, ctx.info, ctx.run_id
    current: dict[RecordId, np.ndarray] = {}
    with ctx.emit.step("read_state") as step:
        entries, verdicts = load_state(ctx.store, state, info, current, ctx.batch_size,
                                       on_read=lambda: ctx.emit.probe("rollback.read"))
        ours = {i for i, v in verdicts.items() if v.entry is not None and (run_id is None or v.entry.run == run_id)}
        todo = [i for i, v in verdicts.items() if v.kind == NUDGED and i in ours]
        settled = [v.entry for i, v in verdicts.items() if v.kind == RESTORED and v.changed and v.entry]
        adopted = [verdicts[i].entry for i in reembedded(verdicts, state) if verdicts[i].entry]
        vanished = [i for i, v in verdicts.items() if v.kind == VANISHED]
        step.update(state_records=len(entries), to_restore=len(todo), already_restored=len(settled),
                    skipped_reembedded=len(adopted), vanished=len(vanished))
    report: dict[str, Any] = {
        "run_id": rid, "status": "dry-run" if dry_run else "rolled-back", "collection": info.collection,
        "of_run": run_id, "started": time.time(), "to_restore": len(todo),
        "already_restored": len(settled), "skipped_reembedded": len(adopted), "vanished": len(vanished),
    }
    if state.unverified:  # --skip-unverified: entries failing their checksums, left as they are
        report["skipped_unverified"] = state.unverified[:100]
    if broken:
        report["broke_lock_of"] = broken.get("run_id")
    if getattr(state, "took_over", None):
        report["took_over_lock_of"] = state.took_over.get("run_id") or state.took_over.get("owner")
    if dry_run:
        report.update(restored=0, bit_exact=0, finished=time.time())
        return report
    writer = BatchWriter(ctx.store, state, info, ctx.emit, "rollback", ctx.batch_size)
    if not todo:  # nothing of ours to restore: only what the read found is recorded (no run record)
        writer.record({}, verdicts)
        report.update(status="unchanged", restored=0, bit_exact=0, finished=time.time())
        return report
    items = [WriteItem(i, np.asarray(verdicts[i].entry.vector, np.float32), current[i], verdicts[i].entry, False)
             for i in todo]
    try:
        writer.write_step(items)
        restored = writer.verify_step(compensate=True)
        writer.record_step(restored, verdicts, lambda: _report(report, writer, restored, entries))
    except (NudgeSyncError, ConnectorError) as exc:
        if not writer.attempted:
            raise
        raise PartiallyWritten(
            f"partially rolled back: {len(writer.attempted)} of {len(todo)} records may be restored before the "
            f"failure ({exc}); run `nudge-sync rollback` again to complete it (the state says which records "
            "are restored)") from None
    return report


def _report(report: dict[str, Any], writer: BatchWriter, restored: dict[RecordId, np.ndarray],
            entries: dict[RecordId, Original]) -> dict[str, Any]:
    wanted = {i: entries[i].vector for i in restored}
    exact = sum(restored[i].tobytes() == np.asarray(wanted[i], np.float32).tobytes() for i in restored)
    worst = max((max_abs(restored[i], wanted[i]) for i in restored), default=0.0)
    # A database that re-normalises what it stores (e.g. Qdrant cosine collections) can move the
    # last bit of a few components; the report says how many vectors came back bit-for-bit.
    report.update(restored=len(restored), bit_exact=int(exact), max_abs_diff=worst,
                  adopted_during_rollback=len(writer.adopted), vanished_during_rollback=len(set(writer.vanished)),
                  finished=time.time())
    if not restored:
        report["status"] = "unchanged"
    return report
