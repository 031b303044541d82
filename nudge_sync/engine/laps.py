"""Step timings, a subscriber: the seconds of each finished step, for a report's ``timings``."""

from __future__ import annotations

from .events import Event, StepFinished


class StepTimings:
    """Collects ``StepFinished.seconds`` per step into :attr:`timings` (a dict a report may share,
    so the report holds every step finished so far, also when it is recorded mid-run)."""

    def __init__(self, timings: dict[str, float] | None = None) -> None:
        self.timings: dict[str, float] = timings if timings is not None else {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepFinished):
            self.timings[event.step] = event.seconds
