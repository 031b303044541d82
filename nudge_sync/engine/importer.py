"""``feedback import``: a log file of any size, checked whole, then appended in bounded memory.

A file of at most ``ALL_AT_ONCE_FLOATS`` query floats is appended all or nothing (one
``append_log``: input the database refuses part-way leaves the log as it was); a larger one, or any
with ``stream=True`` (``--stream``), streams as follows.

Two passes over the file. The first, before the database is opened, checks every entry (the entry
rule, one dimension, each query id once) and keeps only an 8-byte hash per query id for the
duplicate check (8 MB per million entries). The second reads the file again and appends it batch by
batch (``--batch-size`` entries per append), each batch checked against the collection (its
dimension, the backend's limits) and written all or nothing (``VectorStore.append_log``). So memory
is one batch plus the hashes and at most ``KNOWN_IDS`` relevant ids already found in the
collection (each looked up once, not once per batch), whatever the file's size.

What a failed or killed import leaves: every log keeps one record per query id (the key of each
backend's log collection), and an append of an id already there replaces that entry. An import
that stops part-way -- killed, or a batch refused by the database -- leaves the batches before it in
the log (a batch being written when the process was killed may be there in part); running the same
import again rewrites them and adds the rest, never duplicating an entry.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import connectors
from connectors import LabelledQuery, VectorStore

from .emitter import Emitter
from .errors import RefusedInput
from .names import new_run_id
from .ops import append_feedback, appended_counts, check_log_collection
from .wiring import command_events

__all__ = ["ALL_AT_ONCE_FLOATS", "FileSummary", "import_feedback", "scan_log_file"]

#: A file of at most this many query-vector floats (200 MB of float32: 130,000 entries at 384-d) is
#: appended all or nothing, as one ``append_log``; a larger one streams batch by batch (module docstring).
ALL_AT_ONCE_FLOATS = 50_000_000

#: At most this many relevant ids (found in the collection) are remembered across a streamed
#: import's batches, so each is looked up once (a few MB of ids).
KNOWN_IDS = 100_000


@dataclass(frozen=True)
class FileSummary:
    """What the first pass learnt of a log file: how many entries, their dimension."""

    path: Path
    label: str  #: how messages name the file ("log file 'clicks.jsonl'")
    entries: int
    dimension: int
    first: str = ""  #: where the first entry is ("log file 'clicks.jsonl' line 1")
    first_id: str = ""


def _places(path: Path, label: str) -> Iterator[tuple[str, LabelledQuery]]:
    # the duplicate check is done here with hashes, not by the reader's index of every id
    for where, entry in connectors.read_log_places(path, unique_ids=False):
        yield label + where[len(path.name):], entry


def _key(query_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(query_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def scan_log_file(path: Path, label: str) -> FileSummary:
    """The first pass: every entry checked, a query id given twice refused naming both places."""
    keys = array("Q")
    dimension, first, first_id = 0, "", ""
    for where, entry in _places(path, label):
        if not keys:
            dimension, first, first_id = entry.vector.shape[0], where, entry.query_id  # the reader refuses another
        keys.append(_key(entry.query_id))
    if len(keys):
        hashes = np.frombuffer(keys, dtype=np.uint64)
        ordered = np.sort(hashes)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            _refuse_repeated(path, label, set(int(h) for h in repeated[:1000]))
    return FileSummary(path, label, len(keys), dimension, first, first_id)


def _refuse_repeated(path: Path, label: str, suspects: set[int]) -> None:
    """Name the two places of a repeated query id (hashes may also collide for two distinct ids)."""
    seen: dict[str, str] = {}
    for where, entry in _places(path, label):
        if _key(entry.query_id) in suspects:
            earlier = seen.setdefault(entry.query_id, where)
            if earlier != where:
                raise RefusedInput(f"{where}: query_id {entry.query_id!r} was already given at {earlier}; a log "
                                   "file holds each query once (keep one of the two entries)")


def import_feedback(store: VectorStore, summary: FileSummary, *, log_name: str | None = None,
                    batch_size: int = 1000, stream: bool = False) -> dict[str, Any]:
    """The second pass: one all-or-nothing append for a file of at most ``ALL_AT_ONCE_FLOATS`` query
    floats unless ``stream``; else batch by batch (see the module docstring)."""
    emit = Emitter(command_events(None), new_run_id())  # the fault probes, as every command has them
    info = store.describe()
    if summary.dimension != info.dimension:
        raise RefusedInput(f"{summary.first}: query {summary.first_id!r} has a vector of shape ({summary.dimension},); "
                           f"the collection's dimension is {info.dimension} (every entry of the file is "
                           f"{summary.dimension}-d)")
    check_log_collection(store, log_name)
    # an entry without a timestamp is stamped with the import's time, as `feedback add` stamps its
    # own: `--min-new-feedback` and `watch` count the log's entries newer than the last run's watermark
    now = time.time()

    def stamped() -> Iterator[tuple[str, LabelledQuery]]:
        for where, entry in _places(summary.path, summary.label):
            yield where, (entry if entry.timestamp is not None else replace(entry, timestamp=now))

    if not stream and summary.entries * summary.dimension <= ALL_AT_ONCE_FLOATS:
        # fits in memory: one all-or-nothing append, so input a database refuses part-way (a backend's
        # size limit on line 2,101) leaves the log exactly as it was
        entries, places = [], []
        for where, entry in stamped():
            entries.append(entry)
            places.append(where)
        emit.probe("feedback.append")
        log, written, missing = append_feedback(store, entries, log_name=log_name, batch_size=batch_size,
                                                places=places, info=info)
        return {"log": log, **appended_counts(written), "batches": 1, "unknown_ids": list(dict.fromkeys(missing))[:20],
                "unknown_id_count": len(set(missing))}
    totals: dict[str, Any] = {"log": None, "appended": 0, "replaced": 0, "batches": 0}
    # relevant ids found in the collection by earlier batches: most recur (a log answers a log's
    # queries from one collection), so each is looked up once, not once per batch; cleared when
    # full so memory stays bounded whatever the file's size
    known: set[Any] = set()
    unknown: dict[Any, None] = {}  # distinct ids across batches, in order (few: they are the exception)
    batch: list[LabelledQuery] = []
    places: list[str] = []

    def flush() -> None:
        emit.probe("feedback.append")  # before each batch: where a test kills an import part-way
        if len(known) > KNOWN_IDS:
            known.clear()
        totals["log"], written, missing = append_feedback(store, batch, log_name=log_name, batch_size=batch_size,
                                                          places=places, info=info, known=known)
        for key, n in appended_counts(written).items():
            totals[key] += n
        totals["batches"] += 1
        unknown.update(dict.fromkeys(missing))
        batch.clear()
        places.clear()

    for where, entry in stamped():
        batch.append(entry)
        places.append(where)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return {**totals, "unknown_ids": list(unknown)[:20], "unknown_id_count": len(unknown)}

