"""A run held back by a gate: its report, status "gated", is what the run returns (nothing written).

The steps of a run return such a report instead of raising; ``sync`` turns it into the public
``NothingToDo`` (exit code 3) at its boundary, with the report attached."""

from __future__ import annotations

import time

from .errors import NothingToDo
from .options import SyncReport


def gated(report: SyncReport, reason: str, counts: dict[str, int]) -> SyncReport:
    """``report`` marked as held back by a gate, for ``reason``."""
    report.status, report.reason, report.counts = "gated", reason, counts
    report.finished = time.time()
    return report


def is_gated(outcome: object) -> bool:
    return isinstance(outcome, SyncReport) and outcome.status == "gated"


def as_nothing_to_do(report: SyncReport) -> NothingToDo:
    """The exception ``sync`` raises for a gated run; the CLI prints ``exc.report``."""
    exc = NothingToDo(report.reason)
    exc.report = report  # type: ignore[attr-defined]
    return exc
