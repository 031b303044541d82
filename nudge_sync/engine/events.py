"""The engine's event stream: what a run, a rollback or an apply tells whoever listens.

The steps of a run emit typed events into one :class:`Events` sink; progress bars, step timings,
logs, metrics, the HTML report, the watcher and the fault-injection probes are *subscribers*. A step
never imports any of them: a new output is a new subscriber, not a change to a step.

Order of one command's events::

    RunStarted
      StepStarted(step) [Advanced(step, n) ...] [BatchWritten ...] [GateDecided ...] [Probe ...]
      StepFinished(step, seconds, counts)
      ... one StepStarted/StepFinished pair per step, each step entered once, in order ...
    RunFinished(status, report, exit_code)      -- or RunFailed(error, message, exit_code, report)

Steps of ``run``: ``read_inputs``, ``plan``, ``write``, ``verify``, ``record`` (a dry run or a gated
run stops after ``plan``). Steps of ``apply``: ``load_plan``, ``write``, ``verify``, ``record``. Steps
of ``rollback``: ``read_state``, ``write``, ``verify``, ``record``.

A subscriber is any callable taking one event. It must not raise for events it does not know
(new event types may be added); an exception from a subscriber propagates into the run (that is how
the fault-injection subscriber kills or pauses a run at a probe point), so a subscriber that only
observes should catch its own errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Advanced",
    "BatchWritten",
    "Event",
    "Events",
    "GateDecided",
    "Probe",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "StepStarted",
    "Subscriber",
]


@dataclass(frozen=True)
class Event:
    """Every event names its run (``run_id``) and when it happened (``time``, epoch seconds)."""

    run_id: str
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    command: str  #: "run", "rollback", "apply"
    store: str  #: the store's label (a URI without secrets)
    collection: str
    options: dict[str, Any]  #: the options the command runs with (no secrets)
    dry_run: bool = False


@dataclass(frozen=True)
class StepStarted(Event):
    step: str
    total: int | None = None  #: units of work the step expects (records, queries), where known


@dataclass(frozen=True)
class Advanced(Event):
    """``n`` more units of the current step are done (a page read, a batch written)."""

    step: str
    n: int


@dataclass(frozen=True)
class StepFinished(Event):
    step: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchWritten(Event):
    """One batch of the write protocol went to the database."""

    phase: str  #: "run", "rollback", "undo" (the put-back after a failure), "apply"
    written: int  #: vectors sent
    adopted: int = 0  #: records someone else wrote since they were read: left alone
    vanished: int = 0  #: records deleted since they were read
    seconds: float = 0.0


@dataclass(frozen=True)
class GateDecided(Event):
    """A gate let the run go on (``passed``) or held it back (the run then writes nothing)."""

    gate: str  #: "min_new_feedback", "train_queries", "min_val_queries", "min_gain", "max_changed_fraction", "nothing_new"
    passed: bool
    reason: str = ""
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Probe(Event):
    """A fault-injection point (``nudge_sync.engine.faults.POINTS``): the faults subscriber may
    kill or pause the process here, or trace it."""

    point: str
    ids: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    command: str
    status: str  #: the report's status: written, unchanged, dry-run, gated, rolled-back, ...
    report: dict[str, Any]  #: ``SyncReport.to_dict()`` (or rollback's report dict)
    seconds: float
    exit_code: int  #: 0, or 3 for a gated run (what the CLI will exit with)


@dataclass(frozen=True)
class RunFailed(Event):
    command: str
    error: str  #: the exception's class name
    message: str
    exit_code: int  #: the documented exit code (``nudge_sync.engine.errors.exit_code_for``)
    seconds: float
    report: dict[str, Any] | None = None  #: what the run had done, where it got that far


Subscriber = Callable[[Event], None]


class Events:
    """The sink a command emits into; subscribers are called in order, synchronously."""

    def __init__(self, subscribers: Iterable[Subscriber] = ()) -> None:
        self._subscribers: list[Subscriber] = list(subscribers)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            subscriber(event)
