"""The watcher: run a sync on a schedule and/or when enough new feedback has arrived, for as long
as nobody stops it.

One cycle opens the store, runs ``engine.sync`` with the watcher's event sink, and closes the store
again: the lock is held only while a run is active, and between cycles the watcher holds nothing
open, so ``status``, ``eval`` or a manual ``rollback`` work between cycles, and an embedded
database that admits one process per file (Qdrant local mode, a Milvus Lite file) is free for them.

Triggers: with ``schedule`` only, a run at each due time; with ``min_new_feedback`` only, a run as
soon as a poll (every ``poll`` seconds) counts that many new log entries; with both, the schedule
says when and the count whether. The count is cheap: the state's run records (the last watermark)
and the log's timestamps, never the collection's vectors.

A database that is down (or a lock held by another run: two watchers on one collection) is retried
with backoff for ``retry_budget`` seconds; then the cycle is skipped with one logged reason and
the watcher goes on. ``stop`` (set by SIGTERM/SIGINT) ends the watcher at once between runs (exit 0);
inside a run, the run is stopped at its next batch boundary (``Stopped`` raised from the event
stream: the engine puts back what it wrote, or records a partial run) and the watcher returns
``STOPPED_IN_RUN`` (or 7, partially written).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import connectors
from connectors import VectorStore

from ..engine import ops
from ..engine.errors import (
    DatabaseError,
    ExitCode,
    LockHeld,
    NothingToDo,
    NudgeSyncError,
    PartiallyWritten,
    exit_code_for,
)
from ..engine.events import BatchWritten, Event, Events, RunFailed, StepStarted
from ..engine.names import log_name_for
from ..engine.options import SyncOptions
from ..engine.run import sync
from ..engine.state import last_watermark
from .schedule import Schedule

__all__ = ["STOPPED_IN_RUN", "Stopped", "WatchPlan", "count_new_feedback", "watch"]

log = logging.getLogger("nudge_sync.watch")

#: Exit code of a watcher stopped by a signal inside a run that then put back what it had written.
STOPPED_IN_RUN = int(ExitCode.STOPPED_IN_RUN)
#: Backoff between retries of a cycle: first wait, factor, longest wait (seconds).
BACKOFF = (1.0, 2.0, 60.0)


class Stopped(NudgeSyncError):
    """Raised into a run from the event stream when the watcher is asked to stop. A library error
    (not a bug): a run that had written puts it back and ends ``undone`` (DatabaseError, "the
    collection is as it was"); one stopped before writing ends with this error itself."""

    exit_code = STOPPED_IN_RUN  # type: ignore[assignment]


@dataclass(frozen=True)
class WatchPlan:
    """What to watch (a store URI, opened afresh per cycle) and when to run."""

    store: str
    options: SyncOptions
    schedule: Schedule | None = None
    min_new_feedback: int = 0
    poll: float = 60.0
    retry_budget: float = 300.0
    max_cycles: int | None = None  #: stop after this many runs (tests, one-shot use); None: forever
    collection: str | None = None  #: overrides the URI's

    @property
    def store_label(self) -> str:
        return connectors.parse_uri(self.store, collection=self.collection).redacted()

    def __post_init__(self) -> None:
        if self.schedule is None and self.min_new_feedback <= 0:
            raise ValueError("watch needs a schedule (--every or --cron) or --min-new-feedback N (N >= 1)")


def count_new_feedback(store: VectorStore, log_name: str | None, state_name: str | None) -> int:
    """Log entries (distinct query ids) newer than the last run's watermark, the engine's rule:
    reads the state's run records and the log, never the collection's vectors."""
    collection = store.describe().collection
    runs = ops.history(store, state_name=state_name)
    since = last_watermark(runs)
    newest: dict[str, float] = {}
    for entry in store.read_log(log_name_for(collection, log_name)):
        newest[entry.query_id] = max(newest.get(entry.query_id, 0.0), entry.timestamp or 0.0)
    return sum(1 for t in newest.values() if since is None or t > since)


def watch(plan: WatchPlan, events: Events, stop: threading.Event, *, on_cycle: Callable[[], None] = lambda: None,
          clock: Callable[[], float] = time.time) -> int:
    """Watch until ``stop`` is set (or ``max_cycles`` runs are done); the exit code. ``on_cycle`` is
    called after every run (the command line writes its metrics file and pushes there)."""
    log.info("watching %s: %s", plan.store_label, _describe(plan))
    due = plan.schedule.next_after(clock()) if plan.schedule else None
    runs = 0
    while not stop.is_set():
        now = clock()
        trigger = ""
        if due is None or now >= due:
            if due is not None:
                due = plan.schedule.next_after(now)  # the next one, counted from now: no catch-up burst
            trigger = _feedback_trigger(plan, stop) if plan.min_new_feedback else "schedule"
        if trigger:
            code = _cycle(plan, events, stop, trigger)
            runs += 1
            on_cycle()
            if code is not None:  # stopped inside a run: there is no next run to announce
                log.warning("stopped by a signal inside a run (%s), store closed: exit %d",
                            "partially written" if code == ExitCode.PARTIALLY_WRITTEN else "what it wrote was put back",
                            code)
                return code
            log.info("cycle done, store closed%s", f"; next run due {_when(due)}" if due is not None else "")
            if plan.max_cycles is not None and runs >= plan.max_cycles:
                return int(ExitCode.OK)
        stop.wait(max(0.0, due - clock()) if due is not None else plan.poll)
    log.info("stopped between runs")
    return int(ExitCode.OK)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _describe(plan: WatchPlan) -> str:
    parts = [plan.schedule.describe()] if plan.schedule else []
    if plan.min_new_feedback:
        parts.append(f"when {plan.min_new_feedback} new feedback entries arrived (checked every {plan.poll:g}s)")
    return ", ".join(parts)


def _feedback_trigger(plan: WatchPlan, stop: threading.Event) -> str:
    """"feedback" when enough new entries arrived; "" otherwise, or when the check failed (logged)."""
    try:
        with _opened(plan) as store:
            new = count_new_feedback(store, plan.options.log, plan.options.state)
    except (connectors.ConnectorError, NudgeSyncError) as exc:
        log.warning("feedback check skipped: %s", exc)
        return ""
    if new < plan.min_new_feedback:
        log.debug("%d new feedback entries, waiting for %d", new, plan.min_new_feedback)
        return ""
    log.info("%d new feedback entries (threshold %d): starting a run", new, plan.min_new_feedback)
    return "feedback"


def _cycle(plan: WatchPlan, events: Events, stop: threading.Event, trigger: str) -> int | None:
    """One run, retried with backoff while the database is down or the lock is held; None to go
    on watching, or the exit code the watcher ends with (stopped inside a run)."""
    started, delay = time.monotonic(), BACKOFF[0]
    stopper = _StopAtBoundary(stop)
    unsubscribe = events.subscribe(stopper)
    try:
        while True:
            try:
                _run_once(plan, Events([_Relay(events, stopper)]))
                return None
            except NothingToDo as exc:
                log.info("cycle (%s): nothing to do: %s", trigger, exc)
                return None
            except Exception as exc:
                if stop.is_set():  # the run was stopped by us (or failed while stopping)
                    return _stopped_code(exc)
                if not _retryable(exc):
                    log.error("cycle (%s) failed, exit code %d: %s", trigger, int(exit_code_for(exc)), exc)
                    return None
                waited = time.monotonic() - started
                if waited + delay > plan.retry_budget:
                    log.warning("cycle (%s) skipped after %.0fs of retries: %s", trigger, waited, exc)
                    return None
                log.info("retrying in %.0fs: %s", delay, exc)
                if stop.wait(delay):
                    return None  # asked to stop while waiting: no run is active
                delay = min(delay * BACKOFF[1], BACKOFF[2])
    finally:
        unsubscribe()


def _stopped_code(exc: BaseException) -> int:
    """The watcher's exit code after a run stopped by a signal: 7 if it could not put back what it
    wrote, else ``STOPPED_IN_RUN``."""
    return int(exit_code_for(exc)) if isinstance(exc, PartiallyWritten) else STOPPED_IN_RUN


class _Relay:
    """Subscriber of the run's own sink: forwards every event to the watcher's, a run stopped by the
    watcher's signal ending in the watcher's exit code (its summary said "exit 6", the put-back's
    code, while the watcher exited 8)."""

    def __init__(self, events: Events, stopper: _StopAtBoundary) -> None:
        self.events, self.stopper = events, stopper

    def __call__(self, event: Event) -> None:
        if self.stopper.fired and isinstance(event, RunFailed) and event.exit_code != ExitCode.PARTIALLY_WRITTEN:
            event = replace(event, exit_code=STOPPED_IN_RUN)
        self.events.emit(event)


def _run_once(plan: WatchPlan, events: Events) -> None:
    opts = replace(plan.options, dry_run=False)
    with _opened(plan) as store:
        sync(store, opts, events=events, store_label=plan.store_label)  # the engine emits every event itself


@contextmanager
def _opened(plan: WatchPlan) -> Iterator[VectorStore]:
    """The store for one cycle; closed after it, and an embedded database's file let go of (Milvus
    Lite keeps its engine, and its file lock, in this process until released), so other processes
    (``status``, ``rollback``, ``feedback import``) can open it between cycles."""
    store = connectors.open_store(plan.store, collection=plan.collection)
    try:
        yield store
    finally:
        store.close()
        connectors.release_embedded(plan.store, collection=plan.collection)


def _retryable(exc: BaseException) -> bool:
    """A database that is down or a lock held by another run: worth waiting for."""
    if isinstance(exc, LockHeld):
        return True
    if isinstance(exc, PartiallyWritten):
        return False  # the state says what may be written: an operator (or the next cycle) decides
    return isinstance(exc, (connectors.ConnectionFailed, DatabaseError))


class _StopAtBoundary:
    """Subscriber: raises ``Stopped`` once, at the first step start or batch of the run's own writes
    after ``stop`` was set; never during the put-back that follows (that must finish)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.fired = stop, False

    def __call__(self, event: Event) -> None:
        if self.fired or not self.stop.is_set():
            return
        if isinstance(event, StepStarted) or (isinstance(event, BatchWritten) and event.phase in ("run", "apply")):
            self.fired = True
            raise Stopped("stopped by a signal at a batch boundary")
