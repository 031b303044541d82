"""``apply``: write a reviewed plan (``plan --out``, ``nudge_sync.engine.planfile``) exactly, as a run
would have written it. It is ``sync()`` with ``read_inputs`` and ``plan`` replaced by one step,
``load_plan``::

    open_run (describe, checks; the plan's collection, dimension, metric) -> [create the state,
    lock] -> load_plan -> write -> verify -> record

``load_plan`` refuses (RefusedInput, exit 4, nothing written) when the plan no longer matches the
collection: a run or rollback was recorded in the state since the plan was made, or a planned
record vanished or holds another vector than the one the plan was computed against (its
fingerprint) or its target, naming the records (an apply of this plan that failed and put back
what it wrote does not count; one that was killed is completed by running it again). A plan already applied (a run record carries its plan id) is
not applied again: NothingToDo (exit 3, status "gated"), nothing written. Otherwise the write,
verify and record steps are the run's own (``run.write_plan``): originals saved first, so
``rollback`` undoes an applied plan exactly like a run; the run record carries the plan's γ,
validation, split and log watermark, so ``eval``, ``history`` and ``watch`` see it as that run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from connectors import RecordId, StoreConfig, VectorStore, parse_uri

from .classify import same_vector, tolerance_of
from .context import RunContext, open_run
from .emitter import Emitter
from .errors import RefusedInput
from .events import Events
from .gates import gated
from .names import new_run_id
from .options import SyncReport
from .plan import Plan
from .planfile import PlanFile
from .run import run_command, write_plan
from .state import SETTLED, fingerprint
from .verdicts import load_state
from .wiring import Progress, command_events
from .writer import fetch_vectors

__all__ = ["apply_plan", "plan_store_uri"]

#: records a refusal names before it says "and N more"
NAMED = 10


def plan_store_uri(doc: PlanFile, store_uri: str | None, collection: str | None) -> str:
    """The store URI ``apply`` opens: the one given (it may carry what the plan file does not: the
    name of a secret's variable or file, a retry budget), else the plan's own; RefusedInput when it
    names another database (backend, server or path) or collection than the plan's. A given URI
    may come from ``NUDGE_SYNC_STORE`` set for another job, so the server is compared, not only the
    collection's name: the same name on a staging and a production server is common."""
    uri = store_uri or doc.store
    config = parse_uri(uri, collection=collection)
    planned = parse_uri(doc.store)
    if _where(config) != _where(planned) or config.collection != doc.collection:
        raise RefusedInput(f"the plan was made for {planned.redacted()}, not {config.redacted()} (from --store, "
                           "NUDGE_SYNC_STORE or --collection); nothing was written")
    return uri


def _where(config: StoreConfig) -> tuple[str, str, str]:
    """The database a URI reaches: backend, transport and location (options and secrets aside)."""
    return config.backend, config.transport, config.location


def apply_plan(store: VectorStore, doc: PlanFile, *, progress: Progress | None = None, store_label: str = "",
               events: Events | None = None, break_lock: bool = False) -> SyncReport:
    """Write the plan ``doc`` into ``store`` (see the module docstring); the run's report."""
    timings: dict[str, float] = {}
    emit = Emitter(command_events(events, progress, timings), new_run_id())
    options = replace(doc.options, dry_run=False, break_lock=break_lock)

    def opening() -> RunContext:
        ctx = open_run(store, options, store_label, emit, timings, command="apply")
        info = ctx.info
        if (info.collection, info.dimension, info.metric) != (doc.collection, doc.dimension, doc.metric):
            raise RefusedInput(f"the plan was made for collection {doc.collection!r} ({doc.dimension}-d, "
                               f"{doc.metric}); {info.collection!r} is now {info.dimension}-d, {info.metric}: "
                               "make the plan again; nothing was written")
        return ctx

    def steps(ctx: RunContext) -> SyncReport:
        with ctx.locked():
            return write_plan(ctx, load_plan_step(ctx, doc), "apply")

    return run_command(emit, "apply", opening, steps)


def load_plan_step(ctx: RunContext, doc: PlanFile) -> Plan:
    """Step ``load_plan``: the plan checked against the state and the stored vectors, as a
    :class:`Plan` for the run's write steps (the lock is held)."""
    with ctx.emit.step("load_plan", len(doc.records)) as step:
        _fill_report(ctx.report, doc)
        runs = ctx.state.runs()
        done = next((r for r in runs if r.get("plan") == doc.plan_id and r.get("status") in SETTLED),
                    None)
        if done is not None:
            gated(ctx.report, f"plan {doc.plan_id} was already applied by run {done.get('run_id')}: "
                              "nothing written (make a new plan to write again)", dict(ctx.report.counts))
        # an earlier apply of this plan that failed and put back all it wrote ("undone") left
        # the collection as planned: it does not make the plan stale
        runs = [r for r in runs if not (r.get("plan") == doc.plan_id and r.get("status") == "undone")]
        last = runs[-1].get("run_id") if runs else None
        if last != doc.state_last_run:
            since = [r.get("run_id") for r in runs if (r.get("started") or 0.0) > doc.created] or [last]
            raise RefusedInput(f"plan {doc.plan_id} no longer matches the collection: the state recorded "
                               f"{_named(since)} since it was made (it was made after "
                               f"{doc.state_last_run or 'no run'}); make the plan again; nothing was written")
        ids = [r.record_id for r in doc.records]
        now, missing = fetch_vectors(ctx.store, ids, ctx.batch_size, on_batch=lambda: ctx.emit.probe("apply.read"))
        # a record already holding its target was written by an apply of this plan that was killed
        # (no run record yet): written again (a no-op) and recorded, so a rerun completes the apply
        tol = tolerance_of(ctx.info)
        moved = [r.record_id for r in doc.records if r.record_id in now and fingerprint(now[r.record_id]) != r.fp
                 and not same_vector(now[r.record_id], r.target, tol)]
        step.update(planned=len(ids), moved=len(moved), vanished=len(missing),
                    already_written=sum(fingerprint(now[r.record_id]) != r.fp for r in doc.records
                                        if r.record_id in now) - len(moved))
        if moved or missing:
            parts = [f"{len(moved)} hold another vector than planned from: {_named(moved)}"] if moved else []
            parts += [f"{len(missing)} vanished: {_named(missing)}"] if missing else []
            what = "; ".join(parts)
            raise RefusedInput(f"plan {doc.plan_id} no longer matches the collection: of its {len(ids)} records, "
                               f"{what}; make the plan again; nothing was written")
        _, verdicts = load_state(ctx.store, ctx.state, ctx.info, now, ctx.batch_size)
        originals = {i: v.entry for i, v in verdicts.items() if v.entry is not None}
        targets = (np.stack([r.target for r in doc.records]).astype(np.float32) if doc.records
                   else np.zeros((0, doc.dimension), np.float32))
        nudged_after = {r.record_id for r in doc.records if not r.restore}
        return Plan(ids, targets, nudged_after, len(ids) - len(nudged_after), now, originals, verdicts)


def _fill_report(report: SyncReport, doc: PlanFile) -> None:
    """The run's report says what the plan found: its γ, validation, curve, counts, split, log
    watermark and basis (so the run record serves ``eval``, ``history``, ``watch`` and the nothing-new
    gate like a run's: the collection now holds what a run planned from that basis would write)."""
    r = doc.report
    for name in ("gamma", "objective", "context_mode", "method", "curve", "validation", "watermark", "split", "basis"):
        if name in r:
            setattr(report, name, r[name])
    report.counts = dict(r.get("counts") or {})
    report.notes = [*(r.get("notes") or []), f"applied plan {doc.plan_id} (made by run {r.get('run_id')})"]
    report.plan = doc.plan_id


def _named(ids: list[RecordId | str | None]) -> str:
    """The first :data:`NAMED` ids, and how many more."""
    shown = ", ".join(repr(i) for i in ids[:NAMED])
    return shown + (f" and {len(ids) - NAMED} more" if len(ids) > NAMED else "")
