"""The one rule for a labelled query, wherever it enters nudge-sync.

``feedback add``, ``feedback import``, ``--log-file`` (JSONL / Parquet / NPZ) and log collections
written by a database's own client all pass their entries through :func:`labelled_query`, so an
entry is accepted by one path exactly when it is accepted by every other, and nothing that a later
run would refuse (or be misled by) gets into a log:

* ``query_id``      a non-empty string (an integer is taken as its decimal string), valid Unicode;
* ``vector``        a non-empty flat list of real numbers, finite in float32, not all zero (a zero
                    query has no direction: every run would refuse it);
* ``relevant_ids``  a non-empty list of ints (64-bit) or non-empty, valid-Unicode strings;
* ``grades``        absent, or one finite number > 0 per relevant id;
* ``timestamp``     absent, or unix seconds (or an ISO-8601 string / datetime; no offset = UTC)
                    from 2000-01-01 to a day after now. Values that are milliseconds, microseconds
                    or nanoseconds since the epoch are named as such: one of them would move the log
                    watermark thousands of years ahead and gate ``--min-new-feedback`` forever;
* ``split``         absent, or ``"train"``, ``"val"`` or ``"test"``.

Errors are :class:`InvalidEntry` with a message that names the field but not the place; callers
prefix the place (file and line, log and entry, command-line option).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ._base import LabelledQuery, RecordId
from ._errors import InvalidEntry

__all__ = ["EARLIEST_TIMESTAMP", "FUTURE_SLACK", "SPLITS", "check_entry", "labelled_query", "short_repr"]

SPLITS = ("train", "val", "test")
#: 2000-01-01T00:00:00Z: feedback older than this is a unit mistake, not feedback.
EARLIEST_TIMESTAMP = 946_684_800.0
#: How far ahead of this machine's clock a timestamp may be (clocks drift, time zones get mixed up).
FUTURE_SLACK = 86_400.0
_ID_RANGE = (-(2**63), 2**64)  # int64 (Milvus) or uint64 (Qdrant)
_PY_NUMBERS = frozenset((int, float))
_IDS_MESSAGE = "relevant_ids must be a non-empty list of ints or strings"
#: Units a too-large timestamp may have been written in, largest first.
_UNITS = ((1e9, "nanoseconds"), (1e6, "microseconds"), (1e3, "milliseconds"))


def labelled_query(query_id: Any, vector: Any, relevant_ids: Any, grades: Any = None, timestamp: Any = None,
                   split: Any = None, *, now: float | None = None) -> LabelledQuery:
    """A validated :class:`LabelledQuery` from raw field values (JSON, Arrow, numpy or Python values),
    or :class:`InvalidEntry`. ``now`` (default: the clock) bounds timestamps from above."""
    qid = query_id_of(query_id)
    vec = query_vector(vector, qid)
    ids = relevant_ids_of(relevant_ids)
    return LabelledQuery(qid, vec, ids, grades_of(grades, len(ids)), timestamp_of(timestamp, now), split_of(split))


def check_entry(entry: Any, *, now: float | None = None) -> LabelledQuery:
    """``entry`` (a :class:`LabelledQuery`) checked by the rule and normalised: float32 vector,
    ``int``/``str`` ids, float grades and timestamp."""
    if not isinstance(entry, LabelledQuery):
        raise InvalidEntry(f"expected a LabelledQuery, got {type(entry).__name__}")
    return labelled_query(entry.query_id, entry.vector, entry.relevant_ids, entry.grades, entry.timestamp,
                          entry.split, now=now)


# -- one function per field --------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def query_id_of(value: Any) -> str:
    if isinstance(value, str):
        if value:
            return _unicode(str(value), "query_id")
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    raise InvalidEntry(f"query_id must be a non-empty string or an integer, got {short_repr(value)}", "query_id")


def _unicode(s: str, field: str) -> str:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEntry(f"{field} {short_repr(s)} is not valid Unicode (lone surrogate)",
                               "query_id" if field == "query_id" else "relevant_ids") from None
    return s


def query_vector(vector: Any, qid: str = "") -> np.ndarray:
    """A float32 copy of the query embedding of query ``qid``, or InvalidEntry."""
    def bad(message: str) -> InvalidEntry:
        return InvalidEntry(message, "vector")

    if isinstance(vector, np.ndarray):
        if vector.dtype.kind not in "fiu":
            raise bad(f"vector must be a list of numbers, got an array of {vector.dtype}")
        arr = vector
    elif isinstance(vector, (list, tuple)):
        if not set(map(type, vector)) <= _PY_NUMBERS and not all(map(_is_number, vector)):
            raise bad("vector must be a list of numbers")
        try:
            arr = np.asarray(vector, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            arr = np.array([np.inf])
    else:
        raise bad(f"vector must be a list of numbers, got {type(vector).__name__}")
    if arr.ndim != 1 or arr.size == 0:
        raise bad("vector must be a non-empty flat list of numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        vec = arr.astype(np.float32)
    if not np.isfinite(vec).all():
        raise bad(f"query {short_repr(qid)} has NaN or infinite values in its vector (or values beyond float32)")
    if not vec.any():
        raise bad(f"query {short_repr(qid)} has an all-zero vector: a query without a direction cannot be "
                  "learned from")
    return vec


def relevant_ids_of(value: Any) -> list[RecordId]:
    def bad(message: str) -> InvalidEntry:
        return InvalidEntry(message, "relevant_ids")

    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise bad(_IDS_MESSAGE)
    out: list[RecordId] = []
    for i in value:
        if isinstance(i, str):
            if not i:
                raise bad("relevant_ids contains an empty string")
            out.append(_unicode(str(i), "relevant id"))
        elif isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
            i = int(i)
            if not _ID_RANGE[0] <= i < _ID_RANGE[1]:
                raise bad(f"relevant id {i} does not fit in 64 bits")
            out.append(i)
        else:
            raise bad(f"{_IDS_MESSAGE}, got {short_repr(i)} ({type(i).__name__})")
    return out


def grades_of(value: Any, n: int) -> list[float] | None:
    def bad(message: str) -> InvalidEntry:
        return InvalidEntry(message, "grades")

    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise bad(f"grades must be a list of {n} numbers (one per relevant id)")
    if not all(map(_is_number, value)):
        raise bad("grades must be a list of numbers")
    try:
        out = [float(g) for g in value]
    except OverflowError:
        out = [math.inf]
    if not all(math.isfinite(g) and g > 0 for g in out):
        raise bad("grades must be positive finite numbers")
    return out


def timestamp_of(value: Any, now: float | None = None) -> float | None:
    """Unix seconds within [2000-01-01, now + 1 day], or InvalidEntry naming the likely unit mistake."""
    if value is None:
        return None
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise InvalidEntry(f"timestamp {short_repr(value)} is not a finite number of unix seconds", "timestamp")
    latest = (time.time() if now is None else now) + FUTURE_SLACK
    if seconds > latest:
        for factor, unit in _UNITS:
            if EARLIEST_TIMESTAMP <= seconds / factor <= latest:
                raise InvalidEntry(f"timestamp {short_repr(value)} looks like {unit} since the epoch: divide by "
                                   f"{factor:,.0f} (timestamps are unix seconds)", "timestamp")
        raise InvalidEntry(f"timestamp {short_repr(value)} is more than a day in the future ({_when(seconds)}); "
                           "timestamps are unix seconds", "timestamp")
    if seconds < EARLIEST_TIMESTAMP:
        raise InvalidEntry(f"timestamp {short_repr(value)} is before 2000-01-01 ({_when(seconds)}); timestamps are "
                           "unix seconds, e.g. 1767225600 for 2026-01-01", "timestamp")
    return seconds


def _seconds(value: Any) -> float:
    if _is_number(value):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    if isinstance(value, datetime):
        if value.tzinfo is None:  # no offset: UTC, never the local time zone of the machine reading it
            value = value.replace(tzinfo=UTC)
        try:
            return value.timestamp()
        except (OverflowError, ValueError, OSError):
            return math.inf
    raise InvalidEntry(f"timestamp {short_repr(value)} is neither unix seconds nor an ISO-8601 string", "timestamp")


def _when(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return "beyond the calendar"


def split_of(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in SPLITS:
        raise InvalidEntry(f"split is {short_repr(value)}; expected 'train', 'val', 'test' or absent", "split")
    return str(value)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message never carries a megabyte of input."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text):,} chars)"
