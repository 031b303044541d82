"""When the watcher runs: every fixed interval (``--every 6h``) or on a cron expression
(``--cron "0 3 * * *"``, parsed by croniter, in UTC)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["Schedule", "parse_every"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
#: Shortest interval: a watcher polling a database more often than this is a mistake.
MIN_EVERY = 1.0
#: Longest interval (a year): past it a due time leaves the platform's time range, and a watcher
#: that never runs is a mistake too.
MAX_EVERY = 366 * 86400.0


def parse_every(text: str) -> float:
    """``"6h"``, ``"30m"``, ``"1h30m"``, ``"90s"``, ``"1d"`` or plain seconds, as seconds; ValueError otherwise."""
    value = str(text).strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(f"{text!r} is not an interval; expected e.g. 6h, 30m, 1h30m, 90s or 1d") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not MIN_EVERY <= seconds <= MAX_EVERY:  # NaN fails both
        raise ValueError(f"{text!r}: the interval must be between {MIN_EVERY:g} s and {MAX_EVERY / 86400:g} days")
    return seconds


@dataclass(frozen=True)
class Schedule:
    """Exactly one of ``every`` (seconds) and ``cron`` (a five-field cron expression, UTC)."""

    every: float | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule is either an interval or a cron expression")
        if self.cron is not None:
            from croniter import croniter

            if len(self.cron.split()) != 5:
                raise ValueError(f"{self.cron!r} is not a cron expression; expected five fields, "
                                 "e.g. \"0 3 * * *\" (03:00 UTC every day)")
            try:  # the next due time, found now: an expression whose date never comes (30 February) too
                croniter(self.cron, datetime.now(timezone.utc)).get_next(float)
            except Exception as exc:  # croniter's errors name the field; their classes vary by version
                raise ValueError(f"{self.cron!r} is not a valid cron expression, or one that never comes due: {exc}") from None

    def next_after(self, t: float) -> float:
        """The first due time after ``t`` (epoch seconds)."""
        if self.every is not None:
            return t + self.every
        from croniter import croniter

        return float(croniter(self.cron, datetime.fromtimestamp(t, timezone.utc)).get_next(float))

    def describe(self) -> str:
        return f"every {self.every:g}s" if self.every is not None else f"cron {self.cron!r} (UTC)"
