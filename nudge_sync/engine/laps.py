"""Wall-clock time of each step of a run, for its report (``SyncReport.timings``)."""

from __future__ import annotations

import time


class Laps:
    """Seconds since the previous mark, per named step."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step] = round(now - self._clock, 4)
        self._clock = now
