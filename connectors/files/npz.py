"""NPZ log files: the entries as CSR-style arrays, loaded whole (numpy cannot stream an archive)
and always with ``allow_pickle=False``."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._base import LabelledQuery, RecordId
from .common import EntryChecker, LogFileError, OneIdType

__all__ = ["read_npz", "write_npz"]

REQUIRED_ARRAYS = ("query_ids", "vectors", "relevant_indptr", "relevant_ids")
_OPTIONAL_ARRAYS = ("grades", "timestamps", "splits")
#: The most bytes the arrays of one NPZ log may take once loaded: numpy cannot stream an archive, so
#: it is loaded whole; the sizes are read from the arrays' headers before any array is loaded (a
#: small compressed archive may declare a huge array). Larger logs stream as JSONL or Parquet.
MAX_NPZ_BYTES = 1024 * 1024 * 1024


def read_npz(path: Path, check: EntryChecker) -> Iterator[tuple[str, LabelledQuery]]:
    name = path.name
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # pickles are refused, never loaded
        raise LogFileError(f"{name}: not a readable NPZ file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise LogFileError(f"{name}: not an NPZ archive (a single .npy array?)")
    with loaded as npz:
        missing = [k for k in REQUIRED_ARRAYS if k not in npz.files]
        if missing:
            raise LogFileError(f"{name}: missing array(s) {missing}; found {sorted(npz.files)}")
        _check_sizes(npz, name)
        a: dict[str, np.ndarray] = {}
        for k in (*REQUIRED_ARRAYS, *_OPTIONAL_ARRAYS):
            if k in npz.files:
                try:
                    a[k] = npz[k]
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # e.g. an object array
                    raise LogFileError(f"{name}: array {k!r} cannot be read without pickles ({exc})") from None

    def shape_error(key: str, expected: str) -> LogFileError:
        return LogFileError(f"{name}: array {key!r} has shape {a[key].shape} and dtype {a[key].dtype}; "
                            f"expected {expected}")

    qids, vectors, ptr, rel = (a[k] for k in REQUIRED_ARRAYS)
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


def _check_sizes(npz: np.lib.npyio.NpzFile, name: str) -> None:
    """LogFileError when the arrays nudge-sync reads would take more than :data:`MAX_NPZ_BYTES`, told
    from their .npy headers (shape and dtype) before anything is loaded."""
    total = 0
    for k in (*REQUIRED_ARRAYS, *_OPTIONAL_ARRAYS):
        if k not in npz.files:
            continue
        try:
            with npz.zip.open(f"{k}.npy") as fp:
                version = np.lib.format.read_magic(fp)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(fp, max_header_size=1 << 16)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise LogFileError(f"{name}: array {k!r} has no readable .npy header ({exc})") from None
        total += math.prod(shape) * dtype.itemsize
        if total > MAX_NPZ_BYTES:
            raise LogFileError(f"{name}: its arrays would take more than {MAX_NPZ_BYTES:,} bytes in memory (up to "
                               f"{k!r}, shape {shape}, {dtype}); an NPZ log is loaded whole: write a log this "
                               "large as JSONL or Parquet, which are read in pieces")


def _no_nul(s: str, where: str, field: str) -> None:
    if s.endswith("\x00"):  # numpy unicode arrays drop trailing NULs
        raise LogFileError(f"{where}: {field} {s!r} ends with a NUL character, which NPZ cannot store; "
                           f"write JSONL or Parquet instead")


def write_npz(f: BinaryIO, entries: Iterable[tuple[str, LabelledQuery]], name: str) -> int:
    one = OneIdType("NPZ")
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

