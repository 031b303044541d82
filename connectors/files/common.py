"""What every log file format shares: the format names and how a file name picks one, the error
type, the entry checker used for reading and for writing, and the one-id-type rule of the columnar
formats."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._base import LabelledQuery, RecordId
from .._entry import labelled_query
from .._errors import InvalidEntry, InvalidURI

__all__ = ["FORMATS", "INT64_RANGE", "REQUIRED_FIELDS", "EntryChecker", "LogFileError", "OneIdType", "log_format",
           "validated_entries"]

FORMATS = ("jsonl", "parquet", "npz")
_ALIASES = {"jsonl": "jsonl", "ndjson": "jsonl", "jsonl.gz": "jsonl", "ndjson.gz": "jsonl",
            "parquet": "parquet", "npz": "npz"}
_SUFFIXES = ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".jsonl.gz", "jsonl"), (".ndjson.gz", "jsonl"),
             (".parquet", "parquet"), (".npz", "npz"))
INT64_RANGE = (-(2**63), 2**63)
#: The fields (JSONL keys, Parquet columns) every entry must have.
REQUIRED_FIELDS = ("query_id", "vector", "relevant_ids")


class LogFileError(InvalidEntry):
    """A malformed log file or entry (the message names the file, the line / row and the field)."""


def log_format(path: str | Path, format: str | None = None) -> str:
    """``"jsonl"``, ``"parquet"`` or ``"npz"``: ``format`` if given, else from the file name's suffix."""
    if format is not None:
        fmt = _ALIASES.get(str(format).lower().lstrip("."))
        if fmt is None:
            raise InvalidURI(f"log file format {format!r}: expected one of {FORMATS}")
        return fmt
    name = Path(path).name.lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise InvalidURI(f"log file {str(path)!r}: cannot tell its format from its name; name it *.jsonl, *.ndjson, "
                     "*.jsonl.gz, *.parquet or *.npz")


class EntryChecker:
    """Turns raw fields into a validated LabelledQuery (the entry rule, ``connectors/_entry.py``);
    remembers the dimension of the first entry and where each query id was seen, so a file that gives
    one query twice is refused naming both places (which of two entries for one query should win?)."""

    def __init__(self, unique_ids: bool = True) -> None:
        self.dim: int | None = None
        self.first: str = ""
        self.seen: dict[str, str] | None = {} if unique_ids else None

    def entry(self, where: str, query_id: Any, vector: Any, relevant: Any, grades: Any = None,
              timestamp: Any = None, split: Any = None) -> LabelledQuery:
        try:
            e = labelled_query(query_id, vector, relevant, grades, timestamp, split)
        except InvalidEntry as exc:
            raise LogFileError(f"{where}: {exc}", exc.field) from None
        if self.dim is None:
            self.dim, self.first = e.vector.shape[0], where
        elif e.vector.shape[0] != self.dim:
            raise LogFileError(f"{where}: query {e.query_id!r} has a {e.vector.shape[0]}-d vector; the first entry "
                               f"({self.first}) is {self.dim}-d", "vector")
        if self.seen is not None:
            earlier = self.seen.setdefault(e.query_id, where)
            if earlier != where:
                raise LogFileError(f"{where}: query_id {e.query_id!r} was already given at {earlier}; a log file "
                                   "holds each query once (keep one of the two entries)", "query_id")
        return e


def validated_entries(queries: Iterable[LabelledQuery], name: str) -> Iterator[tuple[str, LabelledQuery]]:
    check = EntryChecker(unique_ids=True)
    for n, q in enumerate(queries):
        where = f"{name} entry {n}"
        if not isinstance(q, LabelledQuery):
            raise TypeError(f"{where}: expected a LabelledQuery, got {type(q).__name__}")
        yield where, check.entry(where, q.query_id, np.asarray(q.vector) if not isinstance(q.vector, (list, tuple))
                                 else q.vector, q.relevant_ids, q.grades, q.timestamp, q.split)


class OneIdType:
    """Parquet and NPZ store relevant ids in one typed column: all int64 or all strings."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.kind: type | None = None

    def check(self, where: str, ids: list[RecordId]) -> None:
        kinds = set(map(type, ids))
        if len(kinds) > 1 or (self.kind is not None and kinds != {self.kind}):
            raise LogFileError(f"{where}: relevant_ids mix ints and strings; {self.fmt} log files need one id type "
                               f"for the whole file (all ints or all strings); JSONL allows both")
        (self.kind,) = kinds
        if self.kind is int:
            for i in ids:
                if not INT64_RANGE[0] <= i < INT64_RANGE[1]:  # type: ignore[operator]
                    raise LogFileError(f"{where}: relevant id {i} does not fit in int64, which {self.fmt} log files "
                                       f"use for int ids; write JSONL instead")

