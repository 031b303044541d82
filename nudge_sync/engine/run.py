"""One sync run: DESIGN.md section 3, steps 1-10, as a straight line of typed steps over one
:class:`RunContext`::

    open_run (describe, checks) -> read_inputs -> [create the state, lock] -> plan -> write
    -> verify -> record

Each step (``inputs``, ``plan``, and the writer's ``write``, ``verify``, ``record``) is entered once and emits its events (see
``nudge_sync.engine.events``); a step held back by a gate raises ``NothingToDo`` (exit code 3) with
the run's report, status "gated", attached. A gated run writes nothing at all (no run record: its
RunFinished event carries it).

Invariants: nothing is created before every check that needs no state has passed, and nothing is
written before every check has passed (a run held back by a gate leaves no state collection it
created); originals are saved before the vectors they protect are overwritten, with the target
about to be written; a vector is only ever overwritten if it still holds what the run planned
from (``nudge_sync.engine.writer``), so a concurrent writer's vector is adopted, never overwritten;
fingerprints are taken from what the database returns after the write (a database may
re-normalise what we send); every run starts from the originals, so runs never compound and a
repeated run writes nothing. A run that fails after writing puts back what it wrote (exit 6,
"the collection is as it was before this run"), or, if the database will not let it, says so
(exit 7: rerun or roll back that run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from connectors import LabelledQuery, VectorStore

from .aftermath import undo_on_failure
from .context import RunContext, open_run
from .emitter import Emitter
from .errors import NothingToDo
from .events import Events
from .inputs import read_inputs
from .names import new_run_id
from .options import SyncOptions, SyncReport
from .plan import Plan, plan_run
from .planfile import save_plan
from .wiring import Progress, command_events
from .writer import BatchWriter

__all__ = ["run_command", "sync", "write_plan"]


def sync(
    store: VectorStore,
    options: SyncOptions | None = None,
    *,
    entries: Iterable[LabelledQuery] | None = None,
    progress: Progress | None = None,
    store_label: str = "",
    log_source: str = "",
    events: Events | None = None,
    plan_out: Path | None = None,
) -> SyncReport:
    """Run one sync on ``store``; see :class:`SyncOptions`. Returns a :class:`SyncReport`.

    ``entries`` replaces the log collection (e.g. a JSONL file's entries; ``log_source`` names them
    in error messages, e.g. "log file 'clicks.jsonl'"). ``events`` receives the run's events
    (``nudge_sync.engine.events``); ``progress`` is followed through them. ``plan_out`` (a dry run
    only): the plan is also saved there for ``apply`` (``nudge_sync.engine.planfile``). Raises
    NothingToDo when the log is empty or a gate holds the run back (the report is attached as
    ``exc.report``), RefusedInput / LockHeld / DatabaseError (or a connectors error) otherwise;
    PartiallyWritten (exit 7) when a failed run could not put back what it had written.
    """
    timings: dict[str, float] = {}
    emit = Emitter(command_events(events, progress, timings), new_run_id())

    def steps(ctx: RunContext) -> SyncReport:
        inputs = read_inputs(ctx, entries, log_source, state_exists=ctx.state.exists())
        with ctx.locked():
            plan = plan_run(ctx, inputs)
            if not ctx.opts.dry_run:
                return write_plan(ctx, plan, "run")
            if plan_out is not None:
                ctx.report.plan = save_plan(plan_out, ctx, plan.write_ids, plan.write_vectors, plan.current,
                                            plan.nudged_after)
            return ctx.report.would_write(plan.write_ids, plan.restores)

    return run_command(emit, "run", lambda: open_run(store, options, store_label, emit, timings), steps)


def run_command(emit: Emitter, command: str, opening: Callable[[], RunContext],
                steps: Callable[[RunContext], SyncReport]) -> SyncReport:
    """One command of the shape of a run (``run``, ``apply``): open its context, run its steps, and
    end its event stream with RunFinished (a gate's NothingToDo included) or RunFailed."""
    ctx: RunContext | None = None
    try:
        ctx = opening()
        report = steps(ctx)
    except NothingToDo as exc:
        gated = getattr(exc, "report", None)
        if ctx is not None and gated is ctx.report:  # held back by a gate: a finished run
            emit.finished(command, gated.status, gated.to_dict(), int(exc.exit_code))
        else:
            emit.failed(command, exc)
        raise
    except BaseException as exc:
        emit.failed(command, exc)
        raise
    emit.finished(command, report.status, report.to_dict(), 0)
    return report


def write_plan(ctx: RunContext, plan: Plan, phase: str) -> SyncReport:
    """Steps ``write``, ``verify`` and ``record`` of ``plan`` through the one write protocol
    (``writer.py``), a failure after the first write put back (``aftermath.py``); the report."""
    writer = BatchWriter(ctx.store, ctx.state, ctx.info, ctx.emit, phase, ctx.batch_size)
    with undo_on_failure(ctx, writer, plan.originals, len(plan.write_ids)):
        writer.write_step(plan.items())
        landed = writer.verify_step()
        writer.record_step(landed, plan.verdicts, lambda: ctx.report.wrote(list(landed), **writer.summary(landed)))
    return ctx.report
