"""The write and verify steps of a run (DESIGN.md section 3, steps 9-10): write the plan batch by
batch through the write protocol (``writer``), read it back, write again what did not land, then
record fingerprints and the run. A failed write puts back what it wrote (``aftermath``)."""

from __future__ import annotations

import logging
import time

import numpy as np

from connectors import CollectionInfo, RecordId, VectorStore

from . import faults
from .aftermath import after_failed_write, record_writes
from .laps import Laps
from .options import SyncOptions, SyncReport
from .plan import Plan
from .progress import Progress
from .state import SyncState
from .writer import BatchWriter, WriteItem

log = logging.getLogger(__name__)


def dry_run_report(report: SyncReport, plan: Plan, laps: Laps) -> SyncReport:
    """What a run would write, writing nothing."""
    report.status = "dry-run"
    report.reason = f"would write {len(plan.write_ids)} vectors ({plan.restores} restores)"
    report.written_ids = plan.write_ids
    return finish(report, laps)


def write_plan(store: VectorStore, info: CollectionInfo, opts: SyncOptions, state: SyncState, report: SyncReport,
               plan: Plan, progress: Progress, laps: Laps) -> SyncReport:
    """Write the plan, verify it, record the run; the finished report."""
    items = [WriteItem(i, t, plan.current[i], plan.originals.get(i), i in plan.nudged_after)
             for i, t in zip(plan.write_ids, plan.write_vectors)]
    writer = BatchWriter(store, state, info, report.run_id, "run", opts.batch_size)
    try:
        with progress.phase("writing", len(items)) as p:
            writer.write(items, on_batch=p.advance)
        laps.mark("write")
        landed = verify_writes(writer)
        record_writes(state, report, writer, landed, plan.originals, plan.verdicts)
    except Exception as exc:
        if not writer.attempted:
            raise
        raise after_failed_write(writer, plan.originals, exc, report, state, len(items)) from None
    laps.mark("verify")
    _report_writes(report, writer, landed)
    finish(report, laps)
    state.put_run(report.run_id, report.to_dict())
    faults.probe("run.record")
    log.debug("run %s %s: %s", report.run_id, report.status, report.reason)
    return report


def verify_writes(writer: BatchWriter) -> dict[RecordId, np.ndarray]:
    """Read back every vector written; write again those that did not land. What the database
    holds now for each record that landed (fingerprints are taken from it: a database may
    re-normalise what it is sent)."""
    landed, not_landed = writer.read_back(writer.written_ids())
    if not_landed:
        landed.update(writer.write_again(not_landed))
    return landed


def _report_writes(report: SyncReport, writer: BatchWriter, landed: dict[RecordId, np.ndarray]) -> None:
    report.counts.update(written=len(landed), adopted_during_run=len(writer.adopted),
                         vanished_during_run=len(set(writer.vanished)))
    report.status = "written" if landed else "unchanged"
    restores = sum(not writer.attempted[i].nudged_after for i in landed)
    report.reason = f"wrote {len(landed)} vectors ({restores} restores)"
    if writer.adopted:
        report.reason += f"; {len(writer.adopted)} re-embedded by someone else during the run were adopted, not written"
    report.written_ids = list(landed)


def finish(report: SyncReport, laps: Laps) -> SyncReport:
    report.timings = laps.timings
    report.finished = time.time()
    return report
