"""Parquet log files (need pyarrow): read in record batches (memory bounded by the batch, whatever
the row-group size), written in row groups."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._base import LabelledQuery
from .._errors import MissingDependency
from .common import REQUIRED_FIELDS, EntryChecker, LogFileError, OneIdType

__all__ = ["pyarrow_modules", "read_parquet", "write_parquet"]

READ_BATCH_ROWS = 1024  # rows per record batch when reading
ROW_GROUP_ROWS = 4096  # rows per row group when writing
#: The most uncompressed bytes one row group may take: pyarrow decodes a column chunk of a row group
#: at once, whatever the batch size, so a file with a huge row group is refused from its metadata
#: before anything is decoded (nudge-sync writes row groups of 4,096 entries: a few MiB at 384-d).
MAX_ROW_GROUP_BYTES = 512 * 1024 * 1024


def pyarrow_modules() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        why = "" if isinstance(exc, ModuleNotFoundError) else f" (importing it failed: {exc})"
        raise MissingDependency(
            f"Parquet log files need pyarrow{why}; install it with: pip install 'nudge-sync[parquet]'"
        ) from None
    return pa, pq


def read_parquet(path: Path, check: EntryChecker) -> Iterator[tuple[str, LabelledQuery]]:
    pa, pq = pyarrow_modules()
    try:
        f = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise LogFileError(f"{path.name}: not a readable Parquet file ({exc})") from None
    with f:
        names = f.schema_arrow.names
        missing = [c for c in REQUIRED_FIELDS if c not in names]
        if missing:
            raise LogFileError(f"{path.name}: missing column(s) {missing}; found {names}")
        columns = [c for c in (*REQUIRED_FIELDS, "grades", "timestamp", "split") if c in names]
        _check_row_groups(f, path.name)
        row = 0
        for batch in f.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
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


def _check_row_groups(f: Any, name: str) -> None:
    meta = f.metadata
    for g in range(meta.num_row_groups):
        size = meta.row_group(g).total_byte_size
        if size > MAX_ROW_GROUP_BYTES:
            raise LogFileError(f"{name}: row group {g} takes {size:,} bytes uncompressed; a row group is decoded "
                               f"whole, so at most {MAX_ROW_GROUP_BYTES:,} are read at once: write the file with "
                               "smaller row groups (e.g. pyarrow row_group_size=4096)")


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


def write_parquet(f: BinaryIO, entries: Iterable[tuple[str, LabelledQuery]], name: str) -> int:
    pa, pq = pyarrow_modules()
    one = OneIdType("Parquet")
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
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    try:
        chunk: list[LabelledQuery] = []
        for where, e in entries:
            one.check(where, e.relevant_ids)
            chunk.append(e)
            count += 1
            if len(chunk) == ROW_GROUP_ROWS:
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

