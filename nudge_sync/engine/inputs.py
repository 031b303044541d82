"""The first step of a run (DESIGN.md section 3, steps 3-4): read the labelled query log, split it,
fetch the answers' stored vectors, and apply the gates that need no state. Nothing is created or
locked before this step has passed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from connectors import LabelledQuery, RecordId

from .context import RunContext
from .errors import NothingToDo
from .feedback import Feedback, prepare_feedback
from .gates import gated
from .names import log_name_for
from .noop import basis_of, unchanged_since
from .state import last_watermark
from .writer import fetch_vectors


@dataclass
class Inputs:
    """What a run read before it created anything: the feedback and the answers' stored vectors."""

    feedback: Feedback
    current: dict[RecordId, np.ndarray]
    missing: list[RecordId]
    counts: dict[str, int]


def read_inputs(ctx: RunContext, entries: Iterable[LabelledQuery] | None, log_source: str, *,
                state_exists: bool) -> Inputs:
    """Step ``read_inputs``: the log, split, with the answers' stored vectors.

    ``state_exists``: the state collection exists (its last watermark decides which entries are
    new). Raises NothingToDo when there is no log at all or a gate holds the run back (the gated
    report attached), RefusedInput for bad entries."""
    with ctx.emit.step("read_inputs") as step:
        try:
            return _read(ctx, entries, log_source, state_exists)
        finally:
            step.update(ctx.report.counts)


def _read(ctx: RunContext, entries: Iterable[LabelledQuery] | None, log_source: str,
          state_exists: bool) -> Inputs:
    store, info, opts, report = ctx.store, ctx.info, ctx.opts, ctx.report
    source = log_source or "log entries"
    if entries is None:
        log_name = log_name_for(info.collection, opts.log)
        source = f"log {log_name!r}"
        if not store.log_exists(log_name):
            raise NothingToDo(f"the log collection {log_name!r} does not exist yet: add labelled queries "
                              "with `nudge-sync feedback add|import`, or give --log / --log-file")
        entries = store.read_log(log_name)
    rows = list(_counted(ctx, entries))  # read once: the nothing_new gate and the split both use them
    runs = ctx.state.runs() if state_exists else []  # read once: the watermark and the gate
    since = last_watermark(runs)
    report.basis = basis_of(info, opts, rows)
    _nothing_new(ctx, rows, runs, since, state_exists)
    feedback = prepare_feedback(
        rows, info.dimension, val_fraction=opts.val_fraction, salt=opts.split_salt,
        # cosine and l2 scores are only on the scale the fit uses for unit queries
        normalize_queries=opts.normalize_queries or info.metric != "dot", source=source, since=since,
    )
    ctx.emit.probe("run.read")  # the log is read: a no-op run ends before this probe
    report.watermark = feedback.watermark
    new = feedback.counts.get("new_since_watermark", 0)
    if not ctx.emit.gate("min_new_feedback", new >= opts.min_new_feedback,
                         value=new, threshold=opts.min_new_feedback):
        gated(report, f"{new} new labelled queries since the last run; waiting for "
                     f"{opts.min_new_feedback} (min_new_feedback)", feedback.counts)
    # answers that no longer exist are dropped and counted, not fatal
    feedback, current, missing = feedback.keep_known(lambda ids: fetch_vectors(store, ids, opts.batch_size))
    train, val = feedback.rows("train"), feedback.rows("val")
    counts = {**feedback.counts, "train_queries": len(train), "val_queries": len(val),
              "test_queries": len(feedback.rows("test")), "answers_missing": len(missing)}
    report.counts = counts
    if not ctx.emit.gate("train_queries", len(train) > 0, value=len(train), threshold=1):
        gated(report, "no training queries with known answers", counts)
    if not ctx.emit.gate("min_val_queries", len(val) >= opts.min_val_queries, value=len(val),
                         threshold=opts.min_val_queries):
        gated(report, f"only {len(val)} validation queries; need at least {opts.min_val_queries} "
                     "(min_val_queries) to choose gamma safely", counts)
    return Inputs(feedback, current, missing, counts)


def _nothing_new(ctx: RunContext, rows: list[LabelledQuery], runs: list[dict[str, Any]], since: float | None,
                 state_exists: bool) -> None:
    """The ``nothing_new`` gate (``noop``), before anything of the collection is read."""
    if ctx.opts.force:
        ctx.emit.gate("nothing_new", True, "--force")
        return
    new = sum(1 for e in rows if (e.timestamp or 0.0) > since) if since is not None else 0
    last = unchanged_since(ctx.state, runs, ctx.report.basis, new) if state_exists else ""
    if not ctx.emit.gate("nothing_new", not last, value=new, threshold=1):
        gated(ctx.report, f"nothing new since run {last}: the same log, options, collection size and state "
                          "(--force runs anyway)", {"log_entries": len(rows), "new_since_watermark": 0})


def _counted(ctx: RunContext, entries: Iterable[LabelledQuery]) -> Iterator[LabelledQuery]:
    """The entries, one Advanced event per thousand read (a page of the log)."""
    n = 0
    for n, entry in enumerate(entries, 1):
        yield entry
        if n % 1000 == 0:
            ctx.emit.advance(1000)
    if n % 1000:
        ctx.emit.advance(n % 1000)

