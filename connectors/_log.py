"""Query log entries as plain fields, shared by the backends that store the log in a collection.

Every backend keeps one record per labelled query: the query embedding as the record's vector and
the fields below as payload / metadata / scalar fields:

    query_id      str      (Qdrant keeps it in the payload: its point ids are ints or UUIDs)
    relevant_ids  list of int or str ids of the relevant records
    grades        list of float aligned with relevant_ids, or absent (all 1)
    timestamp     float unix seconds, or absent
    split         "train" | "val" | "test", or absent (the engine splits by a hash of query_id)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._base import LabelledQuery, check_ids
from ._errors import InvalidVectors, UnsupportedCollection

SPLITS = ("train", "val", "test")


def check_query_id(qid: Any, log: str) -> str:
    if not isinstance(qid, str) or not qid:
        raise InvalidVectors(f"query log {log!r}: query_id {qid!r} must be a non-empty str")
    return qid


def entry_fields(q: LabelledQuery, log: str) -> dict[str, Any]:
    """The fields of one entry, validated (InvalidVectors naming the query otherwise)."""
    where = f"query log {log!r} entry {q.query_id!r}"
    rel = check_ids(q.relevant_ids, what=f"{where} relevant_ids")
    grades = None
    if q.grades is not None:
        if len(q.grades) != len(rel):
            raise InvalidVectors(f"{where}: {len(q.grades)} grades for {len(rel)} relevant ids")
        grades = [float(g) for g in q.grades]
        if not all(math.isfinite(g) for g in grades):
            raise InvalidVectors(f"{where}: grades must be finite numbers")
    if q.timestamp is not None and not math.isfinite(float(q.timestamp)):
        raise InvalidVectors(f"{where}: timestamp {q.timestamp!r} is not finite")
    if q.split is not None and q.split not in SPLITS:
        raise InvalidVectors(f"{where}: split {q.split!r} is not one of {SPLITS}")
    ts = None if q.timestamp is None else float(q.timestamp)
    return {"relevant_ids": rel, "grades": grades, "timestamp": ts, "split": q.split}


def entry_from_fields(log: str, qid: str, vector: np.ndarray, fields: Mapping[str, Any]) -> LabelledQuery:
    """An entry read back from a log collection; fields written by hand are checked too."""

    def bad(field: str, why: str) -> UnsupportedCollection:
        return UnsupportedCollection(f"query log {log!r}, entry {qid!r}: field {field!r} {why}")

    raw: Any = fields.get("relevant_ids")
    if raw is None:
        raw = []
    elif isinstance(raw, (str, int)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list) or any(isinstance(i, bool) or not isinstance(i, (str, int)) for i in raw):
        raise bad("relevant_ids", f"must be a list of str or int ids, got {raw!r}")
    grades = fields.get("grades")
    if grades is not None:
        if isinstance(grades, (int, float)) and not isinstance(grades, bool):
            grades = [grades]
        if not isinstance(grades, list) or len(grades) != len(raw):
            raise bad("grades", f"must be a list of {len(raw)} numbers aligned with relevant_ids, got {grades!r}")
        grades = [float(g) for g in grades]
    ts = fields.get("timestamp")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
        raise bad("timestamp", f"must be unix seconds (a number), got {ts!r}")
    split = fields.get("split")
    if split is not None and split not in SPLITS:
        raise bad("split", f"must be one of {SPLITS}, got {split!r}")
    return LabelledQuery(query_id=qid, vector=vector, relevant_ids=list(raw), grades=grades,
                         timestamp=None if ts is None else float(ts), split=split)
