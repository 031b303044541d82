"""A run held back by a gate: its report gets status "gated" and the step raises the public
``NothingToDo`` (exit code 3) with the report attached (the CLI prints ``exc.report``). Nothing
has been written when a gate holds a run back."""

from __future__ import annotations

import time
from typing import NoReturn

from .errors import NothingToDo
from .options import SyncReport


def gated(report: SyncReport, reason: str, counts: dict[str, int]) -> NoReturn:
    """Mark ``report`` as held back by a gate, for ``reason``, and raise it as NothingToDo."""
    report.status, report.reason, report.counts = "gated", reason, counts
    report.finished = time.time()
    exc = NothingToDo(reason)
    exc.report = report  # type: ignore[attr-defined]
    raise exc
