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

from .common import FORMATS, LogFileError, log_format
from .logfile import read_log_file, read_log_places, write_log_file

__all__ = ["FORMATS", "LogFileError", "log_format", "read_log_file", "read_log_places", "write_log_file"]
