"""The ``rollback`` command: its checks, the lock and its event stream around the steps of
``nudge_sync.engine.rollback`` (read_state -> write -> verify -> record)."""

from __future__ import annotations

from typing import Any

from connectors import VectorStore

from .context import Context, open_state
from .emitter import Emitter
from .errors import NothingToDo, RefusedInput
from .events import Events, RunStarted
from .names import new_run_id
from .options import check_batch_size_option
from .rollback import known_run, rollback_steps
from .wiring import Progress, command_events


def rollback(
    store: VectorStore,
    *,
    run_id: str | None = None,
    state_name: str | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    lock_ttl: float = 3600.0,
    break_lock: bool = False,
    progress: Progress | None = None,
    events: Events | None = None,
) -> dict[str, Any]:
    """Write back the original vector of every record nudge-sync changed (or only those whose
    current vector was written by ``run_id``). Records re-embedded by someone else since our write
    are left alone (their new vector is theirs). ``break_lock`` first removes a lock left by a run
    that died (the usual reason to roll back). ``events`` receives the rollback's events. Returns a
    report dict; raises PartiallyWritten (exit 7) when it fails part-way (a rerun finishes it)."""
    emit = Emitter(command_events(events, progress), new_run_id())
    try:
        check_batch_size_option(batch_size)
        info = store.describe()
        state = open_state(store, info.collection, state_name)
        emit.emit(RunStarted(emit.run_id, "rollback", info.backend, info.collection,
                             {"run_id": run_id, "batch_size": batch_size, "lock_ttl": lock_ttl,
                              "break_lock": break_lock}, dry_run))
        if not state.exists():
            raise NothingToDo(f"collection {info.collection!r} has no nudge-sync state: nothing to roll back")
        if run_id is not None and not known_run(state, run_id):
            raise RefusedInput(f"run {run_id!r} is not in the history of {info.collection!r} (see `nudge-sync history`)")
        ctx = Context(store, info, state, emit, batch_size)
        report = _locked(ctx, run_id, dry_run, lock_ttl, break_lock)
    except BaseException as exc:
        emit.failed("rollback", exc)
        raise
    emit.finished("rollback", report["status"], report, 0)
    return report


def _locked(ctx: Context, run_id: str | None, dry_run: bool, lock_ttl: float, break_lock: bool) -> dict[str, Any]:
    state = ctx.state
    broken = state.break_lock() if break_lock and not dry_run else None
    token = None if dry_run else state.acquire(lock_ttl)
    if token is not None:
        ctx.emit.probe("lock.acquired")
    failed = False
    try:
        return rollback_steps(ctx, run_id, dry_run, broken)
    except BaseException:
        failed = True
        raise
    finally:
        if token is not None:
            state.release(token, quiet=failed)
