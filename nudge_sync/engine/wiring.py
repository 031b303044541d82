"""Where a command starts: the event stream it emits into, with the subscribers every command has.

A library user may pass an ``Events`` of their own; the command emits into a stream that forwards
to it, after the built-in subscribers that must always be there: the progress adapter, the step
timings of the report, and the fault probes (``NUDGE_SYNC_FAULTS`` / ``NUDGE_SYNC_TRACE`` and
``faults.on()`` work for every caller, whether it passes ``events`` or not)."""

from __future__ import annotations

from . import faults
from .events import Events
from .laps import StepTimings
from .progress import Progress, ProgressSubscriber

__all__ = ["Progress", "command_events"]


def command_events(events: Events | None, progress: Progress | None = None,
                   timings: dict[str, float] | None = None) -> Events:
    """The stream a command emits into: progress (if given), timings into ``timings`` (if given),
    the caller's own ``events``, then the fault probes (last: a kill at a probe comes after every
    observer saw the probe)."""
    subscribers = []
    if progress is not None:
        subscribers.append(ProgressSubscriber(progress))
    if timings is not None:
        subscribers.append(StepTimings(timings))
    if events is not None:
        subscribers.append(events.emit)
    subscribers.append(faults.subscriber)
    return Events(subscribers)
