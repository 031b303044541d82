"""The run context: one typed object carrying what a command's steps need (store, collection
description, state, event emitter; for a run also its options and report), instead of a tuple
passed by position from step to step. Where a run's context is opened and its state locked."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from connectors import CollectionInfo, VectorStore

from .checks import check_collection, check_state_room
from .emitter import Emitter
from .events import RunStarted
from .options import SyncOptions, SyncReport
from .state import SyncState
from .state_open import open_state
from .views import context_mode

log = logging.getLogger("nudge_sync.engine.run")


@dataclass
class Context:
    """What every command that reads the state or writes vectors works on."""

    store: VectorStore
    info: CollectionInfo
    state: SyncState
    emit: Emitter
    batch_size: int

    @property
    def run_id(self) -> str:
        return self.emit.run_id


@dataclass
class RunContext(Context):
    """One ``sync`` run: the context, its options and the report the steps fill."""

    opts: SyncOptions
    report: SyncReport
    #: how the plan builds the validation context: "exact" or "search" (``views.context_mode``)
    context_mode: str

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The state created if needed and locked around the steps that need it (a dry run
        neither creates nor locks). A run that fails or is held back before writing drops a state
        collection it created (another first run racing it may be using it: only while it holds
        nothing but our lock)."""
        if self.opts.dry_run:
            yield
            return
        state, token, failed, created = self.state, None, False, not self.state.exists()
        try:
            state.ensure(self.info.dimension)
            if self.opts.break_lock:
                state.break_lock()
            token = state.acquire(self.opts.lock_ttl)
            state.set_lock_run(token, self.run_id)
            log.debug("run %s holds the lock of %s", self.run_id, state.name)
            self.report.took_over_lock = state.took_over
            self.emit.probe("lock.acquired")
            yield
        except BaseException:
            failed = True
            if created and token is not None and _drop_quietly(state):
                token = None
            raise
        finally:
            if token is not None:
                state.release(token, quiet=failed)


def open_run(store: VectorStore, options: SyncOptions | None, store_label: str, emit: Emitter,
             timings: dict[str, float], command: str = "run") -> RunContext:
    """A run's context, after every refusal that needs nothing but the collection's description;
    emits RunStarted (of ``command``: "run" or "apply"). ``timings``: the dict the step-timings
    subscriber fills (the report's)."""
    opts = (options or SyncOptions()).validate()
    info = store.describe()
    check_collection(info, opts.method)
    report = SyncReport(
        run_id=emit.run_id, status="", store=store_label or f"{info.backend}:{info.collection}",
        collection=info.collection, method=opts.method, started=time.time(), objective=opts.objective,
        split={"val_fraction": opts.val_fraction, "salt": opts.split_salt}, timings=timings,
    )
    opts = _fit_context_k(info, opts, report)
    state = open_state(store, info, opts.state, opts.log, skip_unverified=opts.skip_unverified)
    check_state_room(state, info)
    emit.emit(RunStarted(emit.run_id, command, report.store, info.collection, asdict(opts), opts.dry_run))
    log.debug("run %s on %s: %s, context %s", report.run_id, report.store, opts.method, opts.context)
    return RunContext(store, info, state, emit, opts.batch_size, opts, report, context_mode(info, opts.context))


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
