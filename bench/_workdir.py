"""The benchmarks' working directory: the caller's, or a temporary one removed afterwards."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def workdir_or_temporary(workdir: Path | str | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (resolved) if given, else a fresh temporary directory deleted on exit."""
    if workdir is not None:
        yield Path(workdir).resolve()
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp).resolve()
