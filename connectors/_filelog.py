"""Labelled query logs in files: JSONL, Parquet and NPZ.

For teams whose feedback lands in a data lake or a queue rather than in the vector database.
``read_log_file`` streams (JSONL line by line, Parquet by row group, NPZ entry by entry from
arrays); ``write_log_file`` writes atomically (temp file + rename). Formats (one entry per query,
see the README for examples):

* JSONL / NDJSON (``.jsonl``, ``.ndjson``, optionally ``.gz``): ``{"query_id", "vector",
  "relevant_ids", "grades"?, "timestamp"? (unix seconds or ISO-8601), "split"?}``; other keys
  (e.g. ``"text"``) are ignored.
* Parquet (``.parquet``, needs pyarrow): the same columns; ``vector`` a list of floats,
  ``relevant_ids`` a list of int64 or of strings, ``timestamp`` float seconds or a timestamp type.
* NPZ (``.npz``): ``query_ids`` (n,), ``vectors`` (n, d), ``relevant_indptr`` (n + 1,) and
  ``relevant_ids`` (CSR: ids of entry i at ``indptr[i]:indptr[i+1]``, int64 or unicode), optional
  ``grades`` (aligned with ``relevant_ids``), ``timestamps`` (n,) (NaN = none), ``splits`` (n,)
  ("" = none). Loaded with ``allow_pickle=False``.

Ids keep their type: JSON integers stay ``int``, strings stay ``str``.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._base import LabelledQuery, RecordId
from ._errors import InvalidURI, InvalidVectors, MissingDependency

__all__ = ["read_log_file", "write_log_file", "log_format"]

FORMATS = ("jsonl", "parquet", "npz")
SPLITS = ("train", "val", "test")


class LogFileError(InvalidVectors):
    """A malformed entry in a log file (names the file, the entry and the field)."""


def log_format(path: str | Path, format: str | None = None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise InvalidURI(f"log file format {format!r}: expected one of {FORMATS}")
        return format
    name = Path(path).name.lower()
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".jsonl.gz", "jsonl"), (".ndjson.gz", "jsonl"),
                        (".parquet", "parquet"), (".npz", "npz")):
        if name.endswith(suffix):
            return fmt
    raise InvalidURI(f"{path}: cannot tell the log format from the file name; use .jsonl, .parquet or .npz")


# -- validation shared by all formats ------------------------------------------------------------------


def _entry(where: str, query_id: Any, vector: Any, relevant: Any, grades: Any, timestamp: Any,
           split: Any) -> LabelledQuery:
    def bad(field: str, why: str) -> LogFileError:
        return LogFileError(f"{where}: {field} {why}")

    if isinstance(query_id, bool) or not isinstance(query_id, (str, int)) or query_id == "":
        raise bad("query_id", "must be a non-empty string or an integer")
    if isinstance(vector, (list, tuple)) and not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
        raise bad("vector", "must be a list of numbers")
    try:
        vec = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise bad("vector", "must be a list of numbers") from None
    if vec.ndim != 1 or vec.size == 0:
        raise bad("vector", "must be a non-empty flat list of numbers")
    if not np.isfinite(vec).all():
        raise LogFileError(f"{where}: query {str(query_id)!r} has NaN or infinite values in its vector")
    if isinstance(relevant, (str, int)) and not isinstance(relevant, bool):
        relevant = [relevant]
    if not isinstance(relevant, (list, tuple)) or not relevant or not all(
            isinstance(i, (str, int)) and not isinstance(i, bool) for i in relevant):
        raise bad("relevant_ids", "must be a non-empty list of ints or strings")
    ids: list[RecordId] = [int(i) if isinstance(i, (int, np.integer)) else str(i) for i in relevant]
    if grades is not None:
        if not isinstance(grades, (list, tuple)) or len(grades) != len(ids):
            raise bad("grades", f"must be a list of {len(ids)} numbers (one per relevant id)")
        try:
            grades = [float(g) for g in grades]
        except (TypeError, ValueError):
            raise bad("grades", "must hold numbers") from None
        if not all(math.isfinite(g) and g > 0 for g in grades):
            raise bad("grades", "must be positive finite numbers")
    if timestamp is not None:
        timestamp = _seconds(timestamp, where)
    if split is not None and split not in SPLITS:
        raise bad("split", f"is {split!r}; expected one of {SPLITS} or absent")
    return LabelledQuery(str(query_id), vec.astype(np.float32), ids, grades, timestamp, split)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise LogFileError(f"{where}: timestamp must be unix seconds or an ISO-8601 string")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise LogFileError(f"{where}: timestamp is not finite")
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise LogFileError(f"{where}: timestamp {value!r} is neither unix seconds nor an ISO-8601 string")


def _check_dimension(entries: Iterable[LabelledQuery], path: Path) -> Iterator[LabelledQuery]:
    dim = None
    for e in entries:
        if dim is None:
            dim = e.vector.shape[0]
        elif e.vector.shape[0] != dim:
            raise LogFileError(f"{path.name}: query {e.query_id!r} has a {e.vector.shape[0]}-d vector; "
                               f"earlier entries are {dim}-d")
        yield e


# -- reading -------------------------------------------------------------------------------------------------


def read_log_file(path: str | Path, *, format: str | None = None) -> Iterator[LabelledQuery]:
    """Entries of a log file, streamed, validated, with one dimension throughout."""
    path = Path(path)
    fmt = log_format(path, format)
    if not path.is_file():
        raise InvalidURI(f"log file {path} does not exist")
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "npz": _read_npz}[fmt]
    return _check_dimension(reader(path), path)


def _read_jsonl(path: Path) -> Iterator[LabelledQuery]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogFileError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise LogFileError(f"{where}: expected a JSON object")
            for required in ("query_id", "vector", "relevant_ids"):
                if required not in obj:
                    raise LogFileError(f"{where}: missing field {required!r}")
            yield _entry(where, obj["query_id"], obj["vector"], obj["relevant_ids"], obj.get("grades"),
                         obj.get("timestamp"), obj.get("split"))


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise MissingDependency("Parquet log files need pyarrow: pip install 'nudge-sync[parquet]'") from None
    return pa, pq


def _read_parquet(path: Path) -> Iterator[LabelledQuery]:
    _, pq = _pyarrow()
    f = pq.ParquetFile(path)
    names = set(f.schema_arrow.names)
    missing = [c for c in ("query_id", "vector", "relevant_ids") if c not in names]
    if missing:
        raise LogFileError(f"{path.name}: missing column(s) {missing}")
    row = 0
    for group in range(f.num_row_groups):
        table = f.read_row_group(group)
        cols = {c: table.column(c).to_pylist() for c in table.column_names}
        for i in range(table.num_rows):
            row += 1
            g = cols.get("grades", [None] * table.num_rows)[i]
            yield _entry(f"{path.name} row {row}", cols["query_id"][i], cols["vector"][i], cols["relevant_ids"][i],
                         g, cols.get("timestamp", [None] * table.num_rows)[i],
                         cols.get("split", [None] * table.num_rows)[i])


def _read_npz(path: Path) -> Iterator[LabelledQuery]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("query_ids", "vectors", "relevant_indptr", "relevant_ids") if k not in npz.files]
            if missing:
                raise LogFileError(f"{path.name}: missing array(s) {missing}")
            qids, vectors, ptr, rel = (npz[k] for k in ("query_ids", "vectors", "relevant_indptr", "relevant_ids"))
            grades = npz["grades"] if "grades" in npz.files else None
            stamps = npz["timestamps"] if "timestamps" in npz.files else None
            splits = npz["splits"] if "splits" in npz.files else None
    except (OSError, ValueError) as exc:  # includes object arrays, refused without pickles
        raise LogFileError(f"{path.name}: not a readable NPZ file ({exc})") from None
    n = len(qids)
    if vectors.ndim != 2 or len(vectors) != n or ptr.shape != (n + 1,) or ptr[0] != 0 or ptr[-1] != len(rel) \
            or np.any(np.diff(ptr) < 0):
        raise LogFileError(f"{path.name}: inconsistent arrays (query_ids {qids.shape}, vectors {vectors.shape}, "
                           f"relevant_indptr {ptr.shape}, relevant_ids {rel.shape})")
    if grades is not None and grades.shape != rel.shape:
        raise LogFileError(f"{path.name}: grades has shape {grades.shape}, relevant_ids {rel.shape}")
    for i in range(n):
        a, b = int(ptr[i]), int(ptr[i + 1])
        ts = None if stamps is None or np.isnan(stamps[i]) else float(stamps[i])
        sp = None if splits is None or str(splits[i]) == "" else str(splits[i])
        yield _entry(f"{path.name} entry {i}", qids[i].item(), vectors[i], rel[a:b].tolist(),
                     None if grades is None else grades[a:b].tolist(), ts, sp)


# -- writing -------------------------------------------------------------------------------------------------


def write_log_file(path: str | Path, queries: Iterable[LabelledQuery], *, format: str | None = None) -> int:
    """Write entries to ``path`` atomically; returns how many were written."""
    path = Path(path)
    fmt = log_format(path, format)
    entries = list(_check_dimension(
        (_entry(f"entry {n}", q.query_id, q.vector, q.relevant_ids, q.grades, q.timestamp, q.split)
         for n, q in enumerate(queries)), path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    os.close(fd)
    try:
        {"jsonl": _write_jsonl, "parquet": _write_parquet, "npz": _write_npz}[fmt](Path(tmp), entries,
                                                                                   path.name.endswith(".gz"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(entries)


def _as_dict(e: LabelledQuery) -> dict[str, Any]:
    out: dict[str, Any] = {"query_id": e.query_id, "vector": [float(x) for x in e.vector],
                           "relevant_ids": list(e.relevant_ids)}
    if e.grades is not None:
        out["grades"] = list(e.grades)
    if e.timestamp is not None:
        out["timestamp"] = e.timestamp
    if e.split is not None:
        out["split"] = e.split
    return out


def _write_jsonl(tmp: Path, entries: Sequence[LabelledQuery], gz: bool) -> None:
    opener = gzip.open if gz else open
    with opener(tmp, "wt", encoding="utf-8") as f:
        for e in entries:
            # float32 -> float keeps every bit: repr of a float64 round-trips exactly
            f.write(json.dumps(_as_dict(e), ensure_ascii=False) + "\n")


def _id_array(ids: list[RecordId]) -> np.ndarray:
    if all(isinstance(i, int) for i in ids):
        return np.asarray(ids, dtype=np.int64)
    if all(isinstance(i, str) for i in ids):
        return np.asarray(ids, dtype=np.str_) if ids else np.zeros(0, dtype="<U1")
    raise LogFileError("NPZ and Parquet logs need relevant ids of one type (all ints or all strings)")


def _write_parquet(tmp: Path, entries: Sequence[LabelledQuery], gz: bool) -> None:
    pa, pq = _pyarrow()
    all_ids = [i for e in entries for i in e.relevant_ids]
    id_type = pa.int64() if all_ids and all(isinstance(i, int) for i in all_ids) else pa.string()
    _id_array(all_ids)  # one type throughout
    table = pa.table({
        "query_id": pa.array([e.query_id for e in entries], pa.string()),
        "vector": pa.array([e.vector.tolist() for e in entries], pa.list_(pa.float32())),
        "relevant_ids": pa.array([list(e.relevant_ids) for e in entries], pa.list_(id_type)),
        "grades": pa.array([e.grades for e in entries], pa.list_(pa.float64())),
        "timestamp": pa.array([e.timestamp for e in entries], pa.float64()),
        "split": pa.array([e.split for e in entries], pa.string()),
    })
    pq.write_table(table, tmp)


def _write_npz(tmp: Path, entries: Sequence[LabelledQuery], gz: bool) -> None:
    all_ids = [i for e in entries for i in e.relevant_ids]
    arrays: dict[str, np.ndarray] = {
        "query_ids": np.asarray([e.query_id for e in entries], dtype=np.str_),
        "vectors": np.stack([e.vector for e in entries]).astype(np.float32) if entries else np.zeros((0, 0), np.float32),
        "relevant_indptr": np.concatenate([[0], np.cumsum([len(e.relevant_ids) for e in entries])]).astype(np.int64),
        "relevant_ids": _id_array(all_ids),
        "timestamps": np.asarray([np.nan if e.timestamp is None else e.timestamp for e in entries], np.float64),
        "splits": np.asarray([e.split or "" for e in entries], dtype=np.str_) if entries else np.zeros(0, "<U1"),
    }
    if any(e.grades is not None for e in entries):
        arrays["grades"] = np.asarray([g for e in entries for g in (e.grades or [1.0] * len(e.relevant_ids))],
                                      np.float64)
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
