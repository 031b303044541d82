"""Structured logs: the run's events as log records, and one JSON object per line for machines.

``EventLog`` is the subscriber: it turns events into records of the ``nudge_sync.run`` logger (the
event's fields travel as ``record.fields``) and ends every run with one summary record (status, γ,
counts, validation before/after, seconds, exit code). ``JsonFormatter`` writes any record (ours
and the client libraries') as one JSON line: time, level, logger, message, run id and the fields.
Redaction is the caller's: it passes the function that removes configured secrets, applied to every
string of the object before it is encoded (a secret with a quote in it is still found).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime, timezone
from typing import Any

from ..engine.events import (
    Advanced,
    BatchWritten,
    Event,
    GateDecided,
    Probe,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)

__all__ = ["EventLog", "JsonFormatter", "LOGGER", "summary"]

#: The logger run events are recorded on.
LOGGER = "nudge_sync.run"
#: The exit code of a run refused because another run holds the lock (``engine.errors.ExitCode``,
#: which this room does not import).
LOCK_HELD = 5


def summary(event: RunFinished | RunFailed) -> dict[str, Any]:
    """The one record a run ends with: what an operator (or an alert) needs from last night."""
    report = event.report or {}
    validation = report.get("validation") or {}
    objective = report.get("objective") or ""
    out: dict[str, Any] = {
        "command": event.command,
        "status": getattr(event, "status", None) or report.get("status") or "failed",
        "exit_code": event.exit_code,
        "seconds": round(event.seconds, 3),
        "gamma": report.get("gamma"),
        "counts": report.get("counts") or {},
        "objective": objective,
        "validation_before": (validation.get("before") or {}).get(objective),
        "validation_after": (validation.get("after") or {}).get(objective),
    }
    if isinstance(event, RunFailed):
        out.update(error=event.error, error_message=event.message)
    return out


class EventLog:
    """Subscriber: every event but the chatty ones (``Advanced``, ``Probe``) becomes a log record."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(LOGGER)

    def __call__(self, event: Event) -> None:
        try:
            self._record(event)
        except Exception:  # an observer never breaks the run it watches
            self.log.debug("could not log event %r", type(event).__name__, exc_info=True)

    def _record(self, event: Event) -> None:
        if isinstance(event, (Advanced, Probe)):
            return
        level = logging.INFO
        if isinstance(event, RunFinished):
            self._emit(level, event, f"{event.command} {event.status} in {event.seconds:.1f}s (exit {event.exit_code})",
                       summary(event), "summary")
            return
        if isinstance(event, RunFailed):
            # another run holding the lock is normal operation (a watcher waits for it, a scheduled
            # run exits 5 and the next one goes ahead): a warning, not an error
            level = logging.WARNING if event.exit_code == LOCK_HELD else logging.ERROR
            self._emit(level, event, f"{event.command} failed (exit {event.exit_code}): {event.message}",
                       summary(event), "summary")
            return
        data = {f.name: getattr(event, f.name) for f in fields(event) if f.name not in ("run_id", "time")}
        if isinstance(event, RunStarted):
            message = f"{event.command} started on {event.store}"
        elif isinstance(event, StepStarted):
            message = f"step {event.step} started"
        elif isinstance(event, StepFinished):
            message = f"step {event.step} finished in {event.seconds:.3f}s"
        elif isinstance(event, GateDecided):
            message = f"gate {event.gate} {'passed' if event.passed else 'held the run back'}"
            if event.reason:
                message += f": {event.reason}"
        elif isinstance(event, BatchWritten):
            message = f"batch written ({event.phase}): {event.written} vectors"
        else:
            message = type(event).__name__
        self._emit(level, event, message, data, type(event).__name__)

    def _emit(self, level: int, event: Event, message: str, data: dict[str, Any], kind: str) -> None:
        self.log.log(level, message, extra={"run_id": event.run_id, "event": kind, "fields": data})


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``redact`` is applied to every string in it."""

    def __init__(self, redact: Callable[[str], str] = lambda s: s) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None)
        if run_id:
            out["run_id"] = run_id
        event = getattr(record, "event", None)
        if event:
            out["event"] = event
        for key, value in (getattr(record, "fields", None) or {}).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(_clean(out, self.redact), sort_keys=False, default=str, allow_nan=False)


def _clean(value: Any, redact: Callable[[str], str]) -> Any:
    """JSON-safe (no NaN, no tuples or dataclasses) and redacted, recursively."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {redact(str(k)): _clean(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_clean(v, redact) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return _clean(asdict(value), redact)
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item(), redact)
    return redact(str(value))
