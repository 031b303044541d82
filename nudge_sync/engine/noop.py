"""The "nothing new" gate: a run whose every input is as the last written run left it answers exit 3
before it reads a vector of the collection or fits (a no-op night costs a log read, not a scan).

A run's result is a function of: the log's entries, the options that shape the plan, the state
(originals, pending writes, the last γ in force), and the collection's vectors. The gate holds the
run back only when each of these is known to be unchanged since the state's latest record:

1. ``--force`` is not given, and the state exists;
2. no lock record is there (no run or rollback in flight, none killed holding it);
3. the state's latest record is a *run* that reached the database (``written`` or ``unchanged``),
   not a rollback, nor a run that ended ``undone`` or ``partial``, nor one that adopted records
   re-embedded (or saw records vanish) while it ran: it did not plan from those, the next run does;
4. that run recorded its ``basis`` (``basis_of``: the plan-shaping options, the collection's
   dimension, metric and record count, and a digest of every log entry), and this run's is equal
   (a log entry added, replaced, edited or deleted, whatever its timestamp, changes the digest);
5. no log entry is newer than the run's watermark (the watermark rule of ``state.last_watermark``);
6. no state entry is pending (a write in flight, e.g. a rollback that failed part-way) or fails
   its checksum: the normal run settles or refuses those; and every entry was last written by a
   run or rollback that has a record (a rollback killed after its writes landed and settled by
   another with nothing left to do leaves entries of an unrecorded id, and the collection restored).

What it does not look at: vectors someone else rewrote in place (the record count unchanged).
Seeing them needs the collection's vectors, which is the cost this gate exists to avoid; a run
that does read them (new feedback, or ``--force``) adopts them as before (``classify``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import numpy as np

from connectors import CollectionInfo, LabelledQuery

from .options import SyncOptions
from .state import SETTLED, SyncState

#: Options that do not change what a run plans (how it reads, locks or reports): left out of the basis.
NOT_PLANNING = ("dry_run", "break_lock", "lock_ttl", "batch_size", "min_new_feedback", "force")


def basis_of(info: CollectionInfo, opts: SyncOptions, entries: list[LabelledQuery]) -> dict[str, Any]:
    """What a run is planned from, besides the state and the vectors: recorded in its run record."""
    options = {k: v for k, v in asdict(opts).items() if k not in NOT_PLANNING}
    return {"options": _digest(repr(sorted(options.items())).encode()), "records": int(info.count),
            "dimension": int(info.dimension), "metric": info.metric, "log": log_digest(entries)}


def log_digest(entries: list[LabelledQuery]) -> str | None:
    """A digest of the log's entries whatever the order the database returns them in; None for
    entries that are not even arrays (the split refuses them, naming the query, right after)."""
    try:
        each = sorted(_digest(repr(_fields(e)).encode() + np.ascontiguousarray(e.vector, dtype="<f4").tobytes())
                      for e in entries)
    except (TypeError, ValueError, AttributeError):
        return None
    return _digest("".join(each).encode())


def _fields(e: LabelledQuery) -> tuple[Any, ...]:
    """An entry's fields as plain values (a backend may hand back numpy or JSON numbers)."""
    grades = None if e.grades is None else [float(g) for g in e.grades]
    stamp = None if e.timestamp is None else float(e.timestamp)
    return e.query_id, stamp, list(e.relevant_ids), grades, e.split


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def unchanged_since(state: SyncState, runs: list[dict[str, Any]], basis: dict[str, Any], new_entries: int) -> str:
    """The id of the latest run when nothing changed since it (rules 2-6 of the module docstring),
    else ``""``. ``runs``: the state's run records, oldest first; ``new_entries``: log entries newer
    than its watermark. Reads the state's lock and entries (bounded by the feedback's answers), never the collection."""
    if new_entries or state.lock() is not None:
        return ""
    last = runs[-1] if runs else {}
    if "of_run" in last or last.get("status") not in SETTLED or last.get("basis") != basis or not basis["log"]:
        return ""
    counts = last.get("counts") or {}
    if counts.get("adopted_during_run") or counts.get("vanished_during_run"):  # planned from what changed
        return ""
    # every entry as a recorded run or rollback left it: a rollback killed after its writes landed,
    # then settled by one with nothing left to restore (which records nothing), leaves entries of
    # an id no record has -- the collection is not what the latest run wrote
    recorded = {r.get("run_id") for r in runs}
    if any(o.pending or o.unverified or (o.run is not None and o.run not in recorded) for o in state.originals()):
        return ""
    return str(last.get("run_id", ""))
