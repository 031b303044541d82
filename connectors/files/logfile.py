"""Reading and writing a log file whatever its format: the checks on the path, the format picked
by name, the atomic write (temp file in the same directory, fsync, rename)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .._base import LabelledQuery
from .._errors import InvalidURI
from .common import EntryChecker, log_format, validated_entries
from .jsonl import MAX_LINE_BYTES, read_jsonl, write_jsonl
from .npz import MAX_NPZ_BYTES, read_npz, write_npz
from .parquet import pyarrow_modules, read_parquet, write_parquet

__all__ = ["read_log_file", "read_log_places", "write_log_file"]

logger = logging.getLogger(__name__)


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
    if format is not None:
        log_format(path, format)  # a bad format is told first: it needs no file
    if not path.exists():
        raise InvalidURI(f"log file {path} does not exist")
    if path.is_dir():
        raise InvalidURI(f"log file {path} is a directory")
    if not path.is_file():  # checked before the name: /dev/zero is "too large", whatever it is called
        raise InvalidURI(f"log file {str(path)!r} is too large to read: not a regular file (a device or a pipe may "
                         f"never end); a log file is a regular file, read with a limit of {MAX_LINE_BYTES:,} "
                         f"bytes per JSONL line and {MAX_NPZ_BYTES:,} bytes of NPZ arrays")
    fmt = log_format(path, format)
    check = EntryChecker(unique_ids)
    if fmt == "parquet":
        pyarrow_modules()
        return read_parquet(path, check)
    return read_jsonl(path, check) if fmt == "jsonl" else read_npz(path, check)


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
        pyarrow_modules()
    entries = validated_entries(queries, path.name)
    parent = path.parent
    if not parent.is_dir():
        raise InvalidURI(f"cannot write log file {path}: directory {parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if fmt == "jsonl":
                count = write_jsonl(f, entries, gz)
            elif fmt == "npz":
                count = write_npz(f, entries, path.name)
            else:
                count = write_parquet(f, entries, path.name)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a new log file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("%s: written, %d entries (%s)", path, count, fmt)
    return count

