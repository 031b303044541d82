"""JSONL / NDJSON log files (optionally gzip-compressed): one JSON object per line, read and written
as a stream."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .._base import LabelledQuery
from .common import REQUIRED_FIELDS, EntryChecker, LogFileError

__all__ = ["MAX_LINE_BYTES", "read_jsonl", "write_jsonl"]

#: The longest line read: an entry's fields may take 16 MiB as JSON (``connectors._log``), its
#: vector as JSON numbers about 25 bytes per dimension. A longer line is refused when its first
#: 64 MiB have been read, whatever the file's (or the gzip stream's) size.
MAX_LINE_BYTES = 64 * 1024 * 1024


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"  # by content, whatever the suffix
        raw.seek(0)
        f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        n = 0
        while True:
            try:
                line = f.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated gzip
                raise LogFileError(f"{path.name} line {n + 1}: cannot read the file ({exc})") from None
            if not line:
                return
            n += 1
            if len(line) > MAX_LINE_BYTES:
                raise LogFileError(f"{path.name} line {n}: longer than {MAX_LINE_BYTES:,} bytes; one log entry "
                                   f"per line, and an entry's fields may take at most 16 MiB")
            yield n, line


def read_jsonl(path: Path, check: EntryChecker) -> Iterator[tuple[str, LabelledQuery]]:
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
        for field in REQUIRED_FIELDS:
            if field not in obj:
                raise LogFileError(f"{where}: missing field {field!r}")
        yield where, check.entry(where, obj["query_id"], obj["vector"], obj["relevant_ids"], obj.get("grades"),
                          obj.get("timestamp"), obj.get("split"))


def write_jsonl(f: BinaryIO, entries: Iterable[tuple[str, LabelledQuery]], gz: bool) -> int:
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

