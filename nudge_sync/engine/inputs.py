"""The first step of a run (DESIGN.md section 3, steps 3-4): read the labelled query log, split it,
fetch the answers' stored vectors, and apply the gates that need no state. Nothing is created or
locked before this step has passed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from connectors import CollectionInfo, LabelledQuery, RecordId, VectorStore

from . import faults
from .errors import NothingToDo
from .feedback import Feedback, prepare_feedback
from .gates import gated
from .names import log_name_for
from .options import SyncOptions, SyncReport
from .progress import Progress
from .state import SyncState
from .writer import fetch_vectors


@dataclass
class Inputs:
    """What a run read before it created anything: the feedback and the answers' stored vectors."""

    feedback: Feedback
    current: dict[RecordId, np.ndarray]
    missing: list[RecordId]
    counts: dict[str, int]


def read_inputs(store: VectorStore, info: CollectionInfo, opts: SyncOptions, state: SyncState | None,
                report: SyncReport, entries: Iterable[LabelledQuery] | None, log_source: str,
                progress: Progress) -> Inputs | SyncReport:
    """The log, split, with the answers' stored vectors; or the gated report of a run held back.

    ``state`` is the existing state collection (None on a first run): its last watermark decides
    which entries are new. Raises NothingToDo when there is no log at all, RefusedInput for bad
    entries."""
    with progress.phase("reading feedback"):
        source = log_source or "log entries"
        if entries is None:
            log_name = log_name_for(info.collection, opts.log)
            source = f"log {log_name!r}"
            if not store.log_exists(log_name):
                raise NothingToDo(f"the log collection {log_name!r} does not exist yet: add labelled queries "
                                  "with `nudge-sync feedback add|import`, or give --log / --log-file")
            entries = store.read_log(log_name)
        feedback = prepare_feedback(
            entries, info.dimension, val_fraction=opts.val_fraction, salt=opts.split_salt,
            # cosine and l2 scores are only on the scale the fit uses for unit queries
            normalize_queries=opts.normalize_queries or info.metric != "dot",
            source=source, since=last_watermark(state) if state is not None else None,
        )
    faults.probe("run.read")
    report.watermark = feedback.watermark
    new = feedback.counts.get("new_since_watermark", 0)
    if opts.min_new_feedback and new < opts.min_new_feedback:
        return gated(report, f"{new} new labelled queries since the last run; waiting for "
                     f"{opts.min_new_feedback} (min_new_feedback)", feedback.counts)
    # answers that no longer exist are dropped and counted, not fatal
    current, missing = fetch_vectors(store, feedback.referenced_ids(), opts.batch_size)
    feedback = feedback.drop_ids(missing)
    train, val = feedback.rows("train"), feedback.rows("val")
    counts = {**feedback.counts, "train_queries": len(train), "val_queries": len(val),
              "test_queries": len(feedback.rows("test")), "answers_missing": len(missing)}
    report.counts = counts
    if len(train) == 0:
        return gated(report, "no training queries with known answers", counts)
    if len(val) < opts.min_val_queries:
        return gated(report, f"only {len(val)} validation queries; need at least {opts.min_val_queries} "
                     "(min_val_queries) to choose gamma safely", counts)
    return Inputs(feedback, current, missing, counts)


def last_watermark(state: SyncState) -> float | None:
    """The log watermark of the last run that reached the database (written or unchanged)."""
    for run in reversed(state.runs()):
        if run.get("status") in ("written", "unchanged") and run.get("watermark") is not None:
            return float(run["watermark"])
    return None
