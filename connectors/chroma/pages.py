"""Reading a whole Chroma collection page by page, shared by the store, its log and its state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import ConnectorError
from .client import Connection


def scan_pages(conn: Connection, coll: Any, name: str, batch_size: int, include: list[str],
               where: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Pages of ``coll.get`` in storage order, each re-reading the previous page's last id so a
    shift of the pages (records deleted before the cursor) is detected instead of skipping one."""
    offset, last = 0, None
    while True:
        overlap = 0 if last is None else 1
        with conn.calls("get (scan)", name):
            page = coll.get(limit=batch_size + overlap, offset=offset - overlap, where=where, include=include)
        ids = list(page["ids"])
        if overlap:
            if not ids or ids[0] != last:
                raise ConnectorError(
                    f"collection {name!r} changed while it was being read (records before position {offset} were "
                    "deleted), so the scan could skip records; nothing was written by this scan, run again"
                )
            page = {k: (v[1:] if k != "included" and v is not None else v) for k, v in page.items()}
            ids = ids[1:]
        if ids:
            yield page
        if len(ids) < batch_size:
            return
        offset += len(ids)
        last = ids[-1]
