"""How a step says what it does: one :class:`Emitter` per command, bound to its run id, that builds
the typed events of ``nudge_sync.engine.events`` and sends them into the command's sink.

The steps call ``step``, ``advance``, ``probe``, ``gate`` and ``batch``; they never know who
listens (progress bars, timings, fault probes, logs, metrics are subscribers)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import NothingToDo, exit_code_for
from .events import (Advanced, BatchWritten, Event, Events, GateDecided, Probe, RunFailed, RunFinished, RunStarted,
                     StepFinished, StepStarted)


class Emitter:
    """The event sink of one command, with the run id every event carries."""

    def __init__(self, events: Events, run_id: str) -> None:
        self.events = events
        self.run_id = run_id
        self.current_step = ""
        self.began = time.perf_counter()
        self.started = False  #: a RunStarted went out

    def emit(self, event: Event) -> None:
        self.started = self.started or isinstance(event, RunStarted)
        self.events.emit(event)

    @contextmanager
    def step(self, name: str, total: int | None = None) -> Iterator[dict[str, int]]:
        """StepStarted, then StepFinished with the seconds taken and the counts the step put into
        the dict it is given. A step held back by a gate (NothingToDo) finishes too; one that fails
        otherwise ends without StepFinished (RunFailed follows)."""
        self.current_step = name
        self.emit(StepStarted(self.run_id, name, total))
        counts: dict[str, int] = {}
        began = time.perf_counter()
        try:
            yield counts
        except NothingToDo:
            self._step_finished(name, began, counts)
            raise
        self._step_finished(name, began, counts)

    def _step_finished(self, name: str, began: float, counts: dict[str, int]) -> None:
        self.emit(StepFinished(self.run_id, name, round(time.perf_counter() - began, 4), dict(counts)))

    def advance(self, n: int, step: str | None = None) -> None:
        self.emit(Advanced(self.run_id, step or self.current_step, int(n)))

    def probe(self, point: str, ids: Sequence[Any] | None = None) -> None:
        self.emit(Probe(self.run_id, point, None if ids is None else tuple(ids)))

    def gate(self, gate: str, passed: bool, reason: str = "", value: float | None = None,
             threshold: float | None = None) -> bool:
        """Emit GateDecided; returns ``passed`` so a step can write ``if not emit.gate(...)``."""
        self.emit(GateDecided(self.run_id, gate, passed, reason,
                              None if value is None else float(value),
                              None if threshold is None else float(threshold)))
        return passed

    def batch(self, phase: str, written: int, adopted: int = 0, vanished: int = 0, seconds: float = 0.0) -> None:
        self.emit(BatchWritten(self.run_id, phase, written, adopted, vanished, round(seconds, 4)))

    def finished(self, command: str, status: str, report: dict[str, Any], exit_code: int = 0) -> None:
        self.emit(RunFinished(self.run_id, command, status, report, self._seconds(), exit_code))

    def failed(self, command: str, exc: BaseException) -> None:
        """RunFailed for ``exc`` (with the report it carries, if any), after a RunStarted that a
        command failing before it knew its collection had not sent yet."""
        if not self.started:
            self.emit(RunStarted(self.run_id, command, "", "", {}))
        report = getattr(exc, "report", None)
        as_dict = report.to_dict() if hasattr(report, "to_dict") else report if isinstance(report, dict) else None
        self.emit(RunFailed(self.run_id, command, type(exc).__name__, str(exc), int(exit_code_for(exc)),
                            self._seconds(), as_dict))

    def _seconds(self) -> float:
        return round(time.perf_counter() - self.began, 4)
