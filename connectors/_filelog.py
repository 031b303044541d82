"""Labelled query logs in files: JSONL, Parquet and NPZ.

For teams whose feedback lands in a data lake or a queue rather than in the vector database.
``read_log_file`` streams: JSONL line by line (also gzip-compressed), Parquet in record batches
(memory bounded by the batch, whatever the row-group size), NPZ entry by entry from its arrays
(an NPZ archive is loaded whole: numpy cannot stream it). ``write_log_file`` validates every
entry and writes atomically (temp file in the same directory, fsync, rename): a failed write
leaves an existing file untouched. Formats, one entry per query (README: "Query log files"):

* JSONL / NDJSON (``.jsonl``, ``.ndjson``, optionally ``.gz``): one object per line,
  ``{"query_id", "vector", "relevant_ids", "grades"?, "timestamp"? (unix seconds or ISO-8601;
  no offset = UTC), "split"?}``; other keys (e.g. ``"text"``) are ignored, blank lines skipped.
* Parquet (``.parquet``, needs pyarrow): the same names as columns; ``vector`` a list or
  fixed-size list of floats, ``relevant_ids`` a list of int64 or of strings, ``grades`` a list
  of floats (null = none), ``timestamp`` float seconds or a timestamp type, ``split`` a string.
* NPZ (``.npz``): ``query_ids`` (n,), ``vectors`` (n, d), ``relevant_indptr`` (n + 1,) and
  ``relevant_ids`` (CSR: the ids of entry i are ``relevant_ids[indptr[i]:indptr[i+1]]``, int64 or
  unicode), optional ``grades`` aligned with ``relevant_ids`` (NaN for an entry without grades),
  ``timestamps`` (n,) float seconds (NaN = none), ``splits`` (n,) ("" = none). Always loaded with
  ``allow_pickle=False``.

Every entry passes the entry rule (``connectors/_entry.py``: the same rule as ``feedback add`` and
log collections), and a file holds each query id once: a repeated one is refused naming both
lines. Ids keep their type: JSON integers stay ``int``, JSON strings stay ``str`` (``"7"`` is not
``7``), numpy integers become ``int``. ``query_id`` is always returned as ``str``. Errors are
:class:`LogFileError` (an :class:`InvalidEntry`) naming the file, the line (JSONL, from 1) or the
row / entry (Parquet / NPZ, from 0), and the field.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._base import LabelledQuery, RecordId
from ._entry import labelled_query
from ._errors import InvalidEntry, InvalidURI, MissingDependency

__all__ = ["LogFileError", "log_format", "read_log_file", "read_log_places", "write_log_file"]

FORMATS = ("jsonl", "parquet", "npz")
_ALIASES = {"jsonl": "jsonl", "ndjson": "jsonl", "jsonl.gz": "jsonl", "ndjson.gz": "jsonl",
            "parquet": "parquet", "npz": "npz"}
_SUFFIXES = ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".jsonl.gz", "jsonl"), (".ndjson.gz", "jsonl"),
             (".parquet", "parquet"), (".npz", "npz"))
_PARQUET_BATCH = 1024  # rows per record batch when reading
_PARQUET_ROW_GROUP = 4096  # rows per row group when writing
_INT64 = (-(2**63), 2**63)
_REQUIRED = ("query_id", "vector", "relevant_ids")
_REQUIRED_NPZ = ("query_ids", "vectors", "relevant_indptr", "relevant_ids")


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
    raise InvalidURI(f"{path}: cannot tell the log format from the file name; use .jsonl, .ndjson, .jsonl.gz, "
                     f".parquet or .npz, or pass format=")


# -- validation shared by every format, for reading and for writing ----------------------------------------


class _Checker:
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


# -- reading -------------------------------------------------------------------------------------------------


def read_log_file(path: str | Path, *, format: str | None = None, unique_ids: bool = True) -> Iterator[LabelledQuery]:
    """Stream the validated entries of a log file (all with one dimension).

    The format comes from the suffix unless ``format`` (``"jsonl"``, ``"parquet"``, ``"npz"``) is
    given. Raises InvalidURI (unknown format, missing file) and MissingDependency (Parquet without
    pyarrow) at once; LogFileError for a malformed entry when iteration reaches it. ``unique_ids``
    refuses a query id given twice (naming both places); the index that needs costs a few hundred
    bytes per entry, while the entries themselves are never all held.
    """
    return (entry for _, entry in read_log_places(path, format=format, unique_ids=unique_ids))


def read_log_places(path: str | Path, *, format: str | None = None,
                    unique_ids: bool = True) -> Iterator[tuple[str, LabelledQuery]]:
    """:func:`read_log_file` with where each entry comes from (``"clicks.jsonl line 17"``), so an
    error found later (e.g. a database's size limit) can still name the line."""
    path = Path(path)
    fmt = log_format(path, format)
    if not path.exists():
        raise InvalidURI(f"log file {path} does not exist")
    if not path.is_file():
        raise InvalidURI(f"log file {path} is not a file")
    check = _Checker(unique_ids)
    if fmt == "parquet":
        _pyarrow()
        return _read_parquet(path, check)
    return _read_jsonl(path, check) if fmt == "jsonl" else _read_npz(path, check)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"  # by content, whatever the suffix
        raw.seek(0)
        f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        it = iter(f)
        n = 0
        while True:
            try:
                line = next(it)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated gzip
                raise LogFileError(f"{path.name} line {n + 1}: cannot read the file ({exc})") from None
            n += 1
            yield n, line


def _read_jsonl(path: Path, check: _Checker) -> Iterator[tuple[str, LabelledQuery]]:
    for n, line in _lines(path):
        where = f"{path.name} line {n}"
        if n == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8").rstrip("\r\n"))  # columns as the user sees them
        except UnicodeDecodeError:
            raise LogFileError(f"{where}: not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise LogFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:  # json's decoder recurses once per nesting level
            raise LogFileError(f"{where}: JSON nested too deeply to be a log entry") from None
        if not isinstance(obj, dict):
            raise LogFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for field in _REQUIRED:
            if field not in obj:
                raise LogFileError(f"{where}: missing field {field!r}")
        yield where, check.entry(where, obj["query_id"], obj["vector"], obj["relevant_ids"], obj.get("grades"),
                          obj.get("timestamp"), obj.get("split"))


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        why = "" if isinstance(exc, ModuleNotFoundError) else f" (importing it failed: {exc})"
        raise MissingDependency(
            f"Parquet log files need pyarrow{why}; install it with: pip install 'nudge-sync[parquet]'"
        ) from None
    return pa, pq


def _read_parquet(path: Path, check: _Checker) -> Iterator[tuple[str, LabelledQuery]]:
    pa, pq = _pyarrow()
    try:
        f = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise LogFileError(f"{path.name}: not a readable Parquet file ({exc})") from None
    with f:
        names = f.schema_arrow.names
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise LogFileError(f"{path.name}: missing column(s) {missing}; found {names}")
        columns = [c for c in (*_REQUIRED, "grades", "timestamp", "split") if c in names]
        row = 0
        for batch in f.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
            n = batch.num_rows
            cols = {c: batch.column(c) for c in columns}
            vectors = _arrow_vectors(pa, cols["vector"])
            qids = cols["query_id"].to_pylist()
            rel = cols["relevant_ids"].to_pylist()
            grades = cols["grades"].to_pylist() if "grades" in cols else [None] * n
            stamps = _arrow_seconds(pa, cols["timestamp"]) if "timestamp" in cols else [None] * n
            splits = cols["split"].to_pylist() if "split" in cols else [None] * n
            for i in range(n):
                where = f"{path.name} row {row}"
                yield where, check.entry(where, qids[i], vectors[i], rel[i], grades[i], stamps[i], splits[i])
                row += 1


def _arrow_vectors(pa: Any, col: Any) -> list[Any]:
    """Rows of a list column as numpy arrays in one pass; anything unusual as Python values (the
    checker then names the row and what is wrong with it)."""
    t = col.type
    listy = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if not listy or col.null_count or not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        return col.to_pylist()
    import pyarrow.compute as pc

    flat = pc.list_flatten(col)
    if flat.null_count:
        return col.to_pylist()
    values = flat.to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.cumsum(pc.list_value_length(col).to_numpy(zero_copy_only=False))])
    return [values[bounds[i]:bounds[i + 1]] for i in range(len(col))]


def _arrow_seconds(pa: Any, col: Any) -> list[Any]:
    t = col.type
    if pa.types.is_timestamp(t):  # stored as UTC epoch counts whatever the time zone
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[t.unit]
        return [None if v is None else v / per_second for v in col.cast(pa.int64()).to_pylist()]
    return col.to_pylist()


def _read_npz(path: Path, check: _Checker) -> Iterator[tuple[str, LabelledQuery]]:
    name = path.name
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # pickles are refused, never loaded
        raise LogFileError(f"{name}: not a readable NPZ file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise LogFileError(f"{name}: not an NPZ archive (a single .npy array?)")
    with loaded as npz:
        missing = [k for k in _REQUIRED_NPZ if k not in npz.files]
        if missing:
            raise LogFileError(f"{name}: missing array(s) {missing}; found {sorted(npz.files)}")
        a: dict[str, np.ndarray] = {}
        for k in (*_REQUIRED_NPZ, "grades", "timestamps", "splits"):
            if k in npz.files:
                try:
                    a[k] = npz[k]
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # e.g. an object array
                    raise LogFileError(f"{name}: array {k!r} cannot be read without pickles ({exc})") from None

    def shape_error(key: str, expected: str) -> LogFileError:
        return LogFileError(f"{name}: array {key!r} has shape {a[key].shape} and dtype {a[key].dtype}; "
                            f"expected {expected}")

    qids, vectors, ptr, rel = (a[k] for k in _REQUIRED_NPZ)
    if qids.ndim != 1 or qids.dtype.kind not in "Uiu":
        raise shape_error("query_ids", "a 1-D array of strings or integers")
    n = qids.shape[0]
    if vectors.ndim != 2 or vectors.shape[0] != n or vectors.dtype.kind not in "fiu":
        raise shape_error("vectors", f"({n}, dimension) numbers, one row per query id")
    if rel.ndim != 1 or rel.dtype.kind not in "Uiu":
        raise shape_error("relevant_ids", "a 1-D array of integers or strings")
    if ptr.shape != (n + 1,) or ptr.dtype.kind not in "iu":
        raise shape_error("relevant_indptr", f"({n + 1},) integers (CSR offsets into relevant_ids)")
    if ptr[0] != 0 or ptr[-1] != rel.shape[0] or np.any(np.diff(ptr.astype(np.int64)) < 0):
        raise LogFileError(f"{name}: relevant_indptr must start at 0, never decrease and end at "
                           f"len(relevant_ids) = {rel.shape[0]}")
    grades = a.get("grades")
    if grades is not None and (grades.shape != rel.shape or grades.dtype.kind not in "fiu"):
        raise shape_error("grades", f"{rel.shape} numbers, aligned with relevant_ids")
    stamps = a.get("timestamps")
    if stamps is not None:
        if stamps.shape != (n,) or stamps.dtype.kind not in "fiuM":
            raise shape_error("timestamps", f"({n},) unix seconds (NaN = none) or datetime64")
        if stamps.dtype.kind == "M":
            nat = np.isnat(stamps)
            seconds = stamps.astype("datetime64[us]").astype(np.int64) / 1e6
            stamps = np.where(nat, np.nan, seconds)
    splits = a.get("splits")
    if splits is not None and (splits.shape != (n,) or splits.dtype.kind != "U"):
        raise shape_error("splits", f"({n},) strings ('' = none)")

    for i in range(n):
        lo, hi = int(ptr[i]), int(ptr[i + 1])
        g = None
        if grades is not None:
            g = grades[lo:hi].astype(np.float64)
            nan = np.isnan(g)
            if nan.all() and g.size:
                g = None
            elif nan.any():
                raise LogFileError(f"{name} entry {i}: grades has NaN for some but not all of its relevant ids")
        ts = None if stamps is None or np.isnan(stamps[i]) else stamps[i].item()
        sp = None if splits is None or splits[i] == "" else str(splits[i])
        where = f"{name} entry {i}"
        yield where, check.entry(where, qids[i].item(), vectors[i], rel[lo:hi], g, ts, sp)


# -- writing -------------------------------------------------------------------------------------------------


def write_log_file(path: str | Path, queries: Iterable[LabelledQuery], *, format: str | None = None) -> int:
    """Validate ``queries`` and write them to ``path`` atomically; returns how many were written.

    The same checks as reading apply (the entry rule, one dimension, each query id once); nothing is left behind on error and an existing file is only
    replaced once the new one is complete. JSONL is written as it is consumed (bounded memory);
    ``.gz`` (or ``format="jsonl.gz"``) compresses it. Parquet and NPZ need one id type per file.
    """
    path = Path(path)
    fmt = log_format(path, format)
    gz = path.name.lower().endswith(".gz") or (format is not None and str(format).lower().endswith(".gz"))
    if fmt == "parquet":
        _pyarrow()
    entries = _validated(queries, path.name)
    parent = path.parent
    if not parent.is_dir():
        raise InvalidURI(f"cannot write log file {path}: directory {parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if fmt == "jsonl":
                count = _write_jsonl(f, entries, gz)
            elif fmt == "npz":
                count = _write_npz(f, entries, path.name)
            else:
                count = _write_parquet(f, entries, path.name)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a new log file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _validated(queries: Iterable[LabelledQuery], name: str) -> Iterator[tuple[str, LabelledQuery]]:
    check = _Checker(unique_ids=True)
    for n, q in enumerate(queries):
        where = f"{name} entry {n}"
        if not isinstance(q, LabelledQuery):
            raise TypeError(f"{where}: expected a LabelledQuery, got {type(q).__name__}")
        yield where, check.entry(where, q.query_id, np.asarray(q.vector) if not isinstance(q.vector, (list, tuple))
                                 else q.vector, q.relevant_ids, q.grades, q.timestamp, q.split)


def _write_jsonl(f: BinaryIO, entries: Iterable[tuple[str, LabelledQuery]], gz: bool) -> int:
    out: BinaryIO = gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) if gz else f  # type: ignore[assignment]
    count = 0
    try:
        for _, e in entries:
            obj: dict[str, Any] = {"query_id": e.query_id, "vector": e.vector.tolist(),  # float32 -> exact float
                                   "relevant_ids": e.relevant_ids}
            if e.grades is not None:
                obj["grades"] = e.grades
            if e.timestamp is not None:
                obj["timestamp"] = e.timestamp
            if e.split is not None:
                obj["split"] = e.split
            out.write(json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n")
            count += 1
    finally:
        if gz:
            out.close()  # writes the gzip trailer; leaves f open
    return count


class _OneIdType:
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
                if not _INT64[0] <= i < _INT64[1]:  # type: ignore[operator]
                    raise LogFileError(f"{where}: relevant id {i} does not fit in int64, which {self.fmt} log files "
                                       f"use for int ids; write JSONL instead")


def _no_nul(s: str, where: str, field: str) -> None:
    if s.endswith("\x00"):  # numpy unicode arrays drop trailing NULs
        raise LogFileError(f"{where}: {field} {s!r} ends with a NUL character, which NPZ cannot store; "
                           f"write JSONL or Parquet instead")


def _write_npz(f: BinaryIO, entries: Iterable[tuple[str, LabelledQuery]], name: str) -> int:
    one = _OneIdType("NPZ")
    qids: list[str] = []
    vectors: list[np.ndarray] = []
    lengths: list[int] = []
    ids: list[RecordId] = []
    grades: list[float] = []
    stamps: list[float] = []
    splits: list[str] = []
    any_grades = False
    for where, e in entries:
        one.check(where, e.relevant_ids)
        _no_nul(e.query_id, where, "query_id")
        if one.kind is str:
            for i in e.relevant_ids:
                _no_nul(i, where, "relevant id")  # type: ignore[arg-type]
        qids.append(e.query_id)
        vectors.append(e.vector)
        lengths.append(len(e.relevant_ids))
        ids.extend(e.relevant_ids)
        any_grades = any_grades or e.grades is not None
        grades.extend(e.grades if e.grades is not None else [math.nan] * len(e.relevant_ids))
        stamps.append(math.nan if e.timestamp is None else e.timestamp)
        splits.append(e.split or "")
    arrays: dict[str, np.ndarray] = {
        "query_ids": np.asarray(qids, dtype=np.str_) if qids else np.zeros(0, "<U1"),
        "vectors": np.stack(vectors) if vectors else np.zeros((0, 0), np.float32),
        "relevant_indptr": np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
        "relevant_ids": (np.asarray(ids, dtype=np.str_) if one.kind is str else np.asarray(ids, dtype=np.int64)),
        "timestamps": np.asarray(stamps, dtype=np.float64),
        "splits": np.asarray(splits, dtype=np.str_) if splits else np.zeros(0, "<U1"),
    }
    if any_grades:
        arrays["grades"] = np.asarray(grades, dtype=np.float64)
    np.savez_compressed(f, **arrays)
    return len(qids)


def _write_parquet(f: BinaryIO, entries: Iterable[tuple[str, LabelledQuery]], name: str) -> int:
    pa, pq = _pyarrow()
    one = _OneIdType("Parquet")
    writer = None
    count = 0

    def schema(id_type: Any) -> Any:
        return pa.schema([("query_id", pa.string()), ("vector", pa.list_(pa.float32())),
                          ("relevant_ids", pa.list_(id_type)), ("grades", pa.list_(pa.float64())),
                          ("timestamp", pa.float64()), ("split", pa.string())])

    def flush(chunk: list[LabelledQuery]) -> None:
        nonlocal writer
        s = schema(pa.string() if one.kind is str else pa.int64())
        if writer is None:
            writer = pq.ParquetWriter(f, s)
        lengths = np.fromiter((e.vector.shape[0] for e in chunk), np.int64, len(chunk))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        table = pa.table({
            "query_id": pa.array([e.query_id for e in chunk], pa.string()),
            "vector": pa.ListArray.from_arrays(offsets, pa.array(np.concatenate([e.vector for e in chunk]))),
            "relevant_ids": pa.array([e.relevant_ids for e in chunk], s.field("relevant_ids").type),
            "grades": pa.array([e.grades for e in chunk], pa.list_(pa.float64())),
            "timestamp": pa.array([e.timestamp for e in chunk], pa.float64()),
            "split": pa.array([e.split for e in chunk], pa.string()),
        }, schema=s)
        writer.write_table(table, row_group_size=_PARQUET_ROW_GROUP)

    try:
        chunk: list[LabelledQuery] = []
        for where, e in entries:
            one.check(where, e.relevant_ids)
            chunk.append(e)
            count += 1
            if len(chunk) == _PARQUET_ROW_GROUP:
                flush(chunk)
                chunk = []
        if chunk:
            flush(chunk)
        if writer is None:  # an empty log: a file with the schema and no rows
            writer = pq.ParquetWriter(f, schema(pa.string()))
    finally:
        if writer is not None:
            writer.close()
    return count
