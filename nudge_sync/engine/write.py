"""The write, verify and record steps of a run (DESIGN.md section 3, steps 9-10): write the plan
batch by batch through the write protocol (``writer``), read it back and write again what did not
land, then record fingerprints and the run. A failure after the first write puts back what the run
wrote (``aftermath.undo_on_failure``)."""

from __future__ import annotations

import time

import numpy as np

from connectors import RecordId

from .context import RunContext
from .options import SyncReport
from .plan import Plan
from .writer import BatchWriter, WriteItem


def dry_run_report(ctx: RunContext, plan: Plan) -> SyncReport:
    """What a run would write, writing nothing."""
    report = ctx.report
    report.status = "dry-run"
    report.reason = f"would write {len(plan.write_ids)} vectors ({plan.restores} restores)"
    report.written_ids = plan.write_ids
    report.finished = time.time()
    return report


def new_writer(ctx: RunContext) -> BatchWriter:
    return BatchWriter(ctx.store, ctx.state, ctx.info, ctx.emit, "run", ctx.opts.batch_size)


def write(ctx: RunContext, plan: Plan, writer: BatchWriter) -> None:
    """Step ``write``: every planned vector through the write protocol, batch by batch."""
    items = [WriteItem(i, t, plan.current[i], plan.originals.get(i), i in plan.nudged_after)
             for i, t in zip(plan.write_ids, plan.write_vectors)]
    with ctx.emit.step("write", len(items)) as step:
        writer.write(items, advance=True)
        step.update(attempted=len(writer.attempted), adopted=len(writer.adopted), vanished=len(set(writer.vanished)))


def verify(ctx: RunContext, writer: BatchWriter) -> dict[RecordId, np.ndarray]:
    """Step ``verify``: read back every vector written; write again those that did not land. What
    the database holds now for each record that landed (fingerprints are taken from it: a
    database may re-normalise what it is sent)."""
    with ctx.emit.step("verify", len(writer.attempted)) as step:
        landed = writer.verify()
        step.update(landed=len(landed), adopted=len(writer.adopted))
    return landed


def record(ctx: RunContext, plan: Plan, writer: BatchWriter, landed: dict[RecordId, np.ndarray]) -> SyncReport:
    """Step ``record``: fingerprints, adoptions and vanished records into the state, then the run."""
    report = ctx.report
    with ctx.emit.step("record") as step:
        writer.record(landed, plan.verdicts)
        _report_writes(report, writer, landed)
        report.finished = time.time()
        ctx.state.put_run(report.run_id, report.to_dict())
        ctx.emit.probe("run.record")
        step.update(written=len(landed))
    return report


def _report_writes(report: SyncReport, writer: BatchWriter, landed: dict[RecordId, np.ndarray]) -> None:
    report.counts.update(written=len(landed), adopted_during_run=len(writer.adopted),
                         vanished_during_run=len(set(writer.vanished)))
    report.status = "written" if landed else "unchanged"
    restores = sum(not writer.attempted[i].nudged_after for i in landed)
    report.reason = f"wrote {len(landed)} vectors ({restores} restores)"
    if writer.adopted:
        report.reason += f"; {len(writer.adopted)} re-embedded by someone else during the run were adopted, not written"
    report.written_ids = list(landed)
