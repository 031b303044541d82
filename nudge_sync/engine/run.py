"""One sync run: DESIGN.md section 3, steps 1-10, as a straight line of typed steps over one
:class:`RunContext`::

    describe, checks -> read_inputs -> [create the state, lock] -> plan -> write -> verify -> record

Each step (``inputs``, ``plan``, ``write``) is entered once and emits its events (see
``nudge_sync.engine.events``); a gated step returns the run's report with status "gated", which
``sync`` raises as ``NothingToDo`` (exit code 3) with the report attached. A gated run writes
nothing at all (no run record: its RunFinished event carries it).

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

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace

from connectors import CollectionInfo, LabelledQuery, VectorStore

from .aftermath import undo_on_failure
from .checks import check_collection, check_state_room
from .context import RunContext, open_state
from .emitter import Emitter
from .errors import NothingToDo
from .events import Events, RunStarted
from .gates import as_nothing_to_do, is_gated
from .inputs import read_inputs
from .names import new_run_id
from .options import SyncOptions, SyncReport
from .plan import plan_run
from .state import SyncState
from .wiring import Progress, command_events
from .write import dry_run_report, new_writer, record, verify, write

__all__ = ["sync"]

#: Step boundaries and outcomes of a run, for whoever configures logging (the CLI shows INFO with -v).
log = logging.getLogger(__name__)


def sync(
    store: VectorStore,
    options: SyncOptions | None = None,
    *,
    entries: Iterable[LabelledQuery] | None = None,
    progress: Progress | None = None,
    store_label: str = "",
    log_source: str = "",
    events: Events | None = None,
) -> SyncReport:
    """Run one sync on ``store``; see :class:`SyncOptions`. Returns a :class:`SyncReport`.

    ``entries`` replaces the log collection (e.g. a JSONL file's entries; ``log_source`` names them
    in error messages, e.g. "log file 'clicks.jsonl'"). ``events`` receives the run's events
    (``nudge_sync.engine.events``); ``progress`` is followed through them. Raises NothingToDo when
    the log is empty or a gate holds the run back (the report is attached as ``exc.report``),
    RefusedInput / LockHeld / DatabaseError (or a connectors error) otherwise; PartiallyWritten
    (exit 7) when a failed run could not put back what it had written.
    """
    timings: dict[str, float] = {}
    emit = Emitter(command_events(events, progress, timings), new_run_id())
    ctx: RunContext | None = None
    try:
        ctx = _context(store, options, store_label, emit, timings)
        report = _run(ctx, entries, log_source)
    except NothingToDo as exc:
        gated = getattr(exc, "report", None)
        if gated is not None and ctx is not None and gated is ctx.report:
            emit.finished("run", gated.status, gated.to_dict(), int(exc.exit_code))
        else:
            _failed(emit, ctx, store, exc)
        raise
    except BaseException as exc:
        _failed(emit, ctx, store, exc)
        raise
    emit.finished("run", report.status, report.to_dict(), 0)
    return report


def _run(ctx: RunContext, entries: Iterable[LabelledQuery] | None, log_source: str) -> SyncReport:
    """The steps, in order: read_inputs -> plan -> write -> verify -> record."""
    existed = ctx.state.exists()
    inputs = read_inputs(ctx, entries, log_source, state_exists=existed)
    if is_gated(inputs):  # before anything was created or locked
        raise as_nothing_to_do(inputs)
    with _locked(ctx, created=not existed):
        plan = plan_run(ctx, inputs)
        if is_gated(plan):
            raise as_nothing_to_do(plan)
        if ctx.opts.dry_run:
            return dry_run_report(ctx, plan)
        writer = new_writer(ctx)
        with undo_on_failure(ctx, writer, plan.originals, len(plan.write_ids)):
            write(ctx, plan, writer)
            landed = verify(ctx, writer)
            return record(ctx, plan, writer, landed)


def _context(store: VectorStore, options: SyncOptions | None, store_label: str, emit: Emitter,
             timings: dict[str, float]) -> RunContext:
    """The run's context, after every refusal that needs nothing but the collection's description;
    emits RunStarted."""
    opts = (options or SyncOptions()).validate()
    info = store.describe()
    check_collection(info, opts.method)
    report = _new_report(info, opts, store_label, emit.run_id)
    report.timings = timings  # the timings subscriber fills it as steps finish
    opts = _fit_context_k(info, opts, report)
    state = open_state(store, info.collection, opts.state)
    check_state_room(state, info)
    emit.emit(RunStarted(emit.run_id, "run", report.store, info.collection, _public(opts), opts.dry_run))
    log.debug("run %s on %s: %s, context %s", report.run_id, report.store, opts.method, opts.context)
    return RunContext(store, info, state, emit, opts.batch_size, opts, report)


@contextmanager
def _locked(ctx: RunContext, *, created: bool) -> Iterator[None]:
    """The state created if needed and locked around the steps that need it (a dry run neither
    creates nor locks). A run that fails or is held back before writing drops a state collection
    it created (another first run racing it may be using it: only while it holds nothing)."""
    if ctx.opts.dry_run:
        yield
        return
    state, token, failed = ctx.state, None, False
    try:
        state.ensure(ctx.info.dimension)
        if ctx.opts.break_lock:
            state.break_lock()
        token = state.acquire(ctx.opts.lock_ttl)
        state.set_lock_run(token, ctx.run_id)
        log.debug("run %s holds the lock of %s", ctx.run_id, state.name)
        ctx.report.took_over_lock = state.took_over
        ctx.emit.probe("lock.acquired")
        yield
    except BaseException:
        failed = True
        if created and token is not None and _drop_quietly(state):
            token = None
        raise
    finally:
        if token is not None:
            state.release(token, quiet=failed)


def _failed(emit: Emitter, ctx: RunContext | None, store: VectorStore, exc: BaseException) -> None:
    """RunFailed (after a RunStarted, which a run that failed before its context had not emitted)."""
    report = getattr(exc, "report", None)
    if ctx is None:
        emit.emit(RunStarted(emit.run_id, "run", "", "", {}))
    emit.failed("run", exc, report.to_dict() if isinstance(report, SyncReport) else None)


def _public(opts: SyncOptions) -> dict[str, object]:
    return asdict(opts)


def _new_report(info: CollectionInfo, opts: SyncOptions, store_label: str, run_id: str) -> SyncReport:
    return SyncReport(
        run_id=run_id, status="", store=store_label or f"{info.backend}:{info.collection}",
        collection=info.collection, method=opts.method, started=time.time(), objective=opts.objective,
        split={"val_fraction": opts.val_fraction, "salt": opts.split_salt},
    )


def _fit_context_k(info: CollectionInfo, opts: SyncOptions, report: SyncReport) -> SyncOptions:
    """A deeper context than the collection holds only costs memory: cap it, with a note."""
    if opts.context_k <= max(info.count, 1):
        return opts
    report.notes.append(f"context_k={opts.context_k} is more than the {info.count} records of "
                        f"{info.collection!r}; using {max(info.count, 1)}")
    return replace(opts, context_k=max(info.count, 1))


def _drop_quietly(state: SyncState) -> bool:
    """Drop a state collection that holds no original (only our lock): True if dropped."""
    try:
        return state.drop_if_only_lock()
    except Exception:  # the error being raised matters more than this clean-up
        return False
