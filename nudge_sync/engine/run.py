"""One sync run: DESIGN.md section 3, steps 1-10, as typed steps.

    describe, checks -> ``inputs.read_inputs`` (log, answer ids, split; gates that need no state)
    -> create the state, lock -> ``plan.plan_run`` (classify every state entry, base vectors from
    ORIGINALS, validation context, fit NUDGE, gate, diff) -> ``write.write_plan`` (write in
    batches: re-read, save originals with targets, write; read back; fingerprints + run record)
    -> unlock

A step held back by a gate returns the run's report with status "gated"; ``sync`` raises it as
``NothingToDo`` at its boundary (exit code 3).

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
from collections.abc import Iterable
from dataclasses import replace

from connectors import CollectionInfo, LabelledQuery, VectorStore

from . import faults
from .checks import check_collection, check_state_room
from .gates import as_nothing_to_do, is_gated
from .inputs import Inputs, read_inputs
from .laps import Laps
from .names import new_run_id
from .options import SyncOptions, SyncReport
from .plan import plan_run
from .progress import Progress
from .state import SyncState
from .state_open import open_state
from .write import dry_run_report, write_plan

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
) -> SyncReport:
    """Run one sync on ``store``; see :class:`SyncOptions`. Returns a :class:`SyncReport`.

    ``entries`` replaces the log collection (e.g. a JSONL file's entries; ``log_source`` names them
    in error messages, e.g. "log file 'clicks.jsonl'"). Raises NothingToDo when
    the log is empty or a gate holds the run back (the report is attached as ``exc.report``),
    RefusedInput / LockHeld / DatabaseError (or a connectors error) otherwise; PartiallyWritten
    (exit 7) when a failed run could not put back what it had written.
    """
    opts = (options or SyncOptions()).validate()
    progress = progress or Progress()
    laps = Laps()
    info = store.describe()
    check_collection(info, opts.method)
    report = _new_report(info, opts, store_label)
    opts = _fit_context_k(info, opts, report)
    state = open_state(store, info, opts.state, opts.log, skip_unverified=opts.skip_unverified)
    existed = state.exists()
    check_state_room(state, info)

    # every check that needs no state first: a refused or gated run creates nothing
    log.debug("run %s on %s: %s, context %s", report.run_id, report.store, opts.method, opts.context)
    inputs = read_inputs(store, info, opts, state if existed else None, report, entries, log_source, progress)
    if isinstance(inputs, SyncReport):  # gated
        log.debug("run %s held back before locking: %s", report.run_id, inputs.reason)
        raise as_nothing_to_do(_record_gated(state, inputs, laps, record=existed and not opts.dry_run))
    laps.mark("read_log")
    if opts.dry_run:  # no state created, no lock: nothing is written
        outcome = _plan_and_write(store, info, opts, state, report, inputs, progress, laps)
        if is_gated(outcome):
            raise as_nothing_to_do(outcome)
        return outcome
    return _locked_run(store, info, opts, state, report, inputs, progress, laps, created=not existed)


def _locked_run(store: VectorStore, info: CollectionInfo, opts: SyncOptions, state: SyncState, report: SyncReport,
                inputs: Inputs, progress: Progress, laps: Laps, *, created: bool) -> SyncReport:
    """The steps that need the state and its lock: create it if needed, lock, plan, write, unlock."""
    token = None
    failed = False
    try:
        state.ensure(info.dimension)
        if opts.break_lock:
            state.break_lock()
        token = state.acquire(opts.lock_ttl)
        state.set_lock_run(token, report.run_id)
        log.debug("run %s holds the lock of %s", report.run_id, state.name)
        report.took_over_lock = state.took_over
        faults.probe("lock.acquired")
        outcome = _plan_and_write(store, info, opts, state, report, inputs, progress, laps)
        if is_gated(outcome):
            log.debug("run %s held back: %s", report.run_id, outcome.reason)
            failed = True
            # held back before anything was written: the state this run created (and still holds
            # the lock of: another first run racing it may be using it) is dropped again
            if created and _drop_quietly(state):
                token = None
            raise as_nothing_to_do(_record_gated(state, outcome, laps, record=not created))
        return outcome
    except BaseException:
        if not failed:
            failed = True
            if created and token is not None and _drop_quietly(state):
                token = None
        raise
    finally:
        if token is not None:
            state.release(token, quiet=failed)


def _plan_and_write(store: VectorStore, info: CollectionInfo, opts: SyncOptions, state: SyncState,
                    report: SyncReport, inputs: Inputs, progress: Progress, laps: Laps) -> SyncReport:
    """Plan, then write (or, for a dry run, report what would be written); a gated report as is."""
    plan = plan_run(store, info, opts, state, report, inputs, progress, laps)
    if isinstance(plan, SyncReport):
        return plan
    if opts.dry_run:
        return dry_run_report(report, plan, laps)
    return write_plan(store, info, opts, state, report, plan, progress, laps)


def _new_report(info: CollectionInfo, opts: SyncOptions, store_label: str) -> SyncReport:
    return SyncReport(
        run_id=new_run_id(), status="", store=store_label or f"{info.backend}:{info.collection}",
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


def _record_gated(state: SyncState, report: SyncReport, laps: Laps, *, record: bool) -> SyncReport:
    """A gated run is history too ("why did last night's run not write?"), in a state that existed."""
    if record:
        report.timings = laps.timings
        state.put_run(report.run_id, report.to_dict())
    return report


def _drop_quietly(state: SyncState) -> bool:
    """Drop a state collection that holds no original (only our lock): True if dropped."""
    try:
        return state.drop_if_only_lock()
    except Exception:  # the error being raised matters more than this clean-up
        return False
