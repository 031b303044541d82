"""The watcher's schedules: intervals as people write them, cron expressions through croniter."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nudge_sync.watch.schedule import Schedule, parse_every


@pytest.mark.parametrize("text,seconds", [("6h", 21600), ("30m", 1800), ("1h30m", 5400), ("90s", 90), ("1d", 86400),
                                          ("90", 90), ("1.5h", 5400)])
def test_intervals(text, seconds):
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["6x", "", "h", "0", "0s", "-1h", "nan", "inf", "1h 30m", "6hours", "367d", "99999999999d"])
def test_bad_intervals_are_refused(text):
    with pytest.raises(ValueError):
        parse_every(text)


def test_cron_is_read_in_utc():
    at_0259 = datetime(2026, 12, 7, 2, 59, tzinfo=timezone.utc).timestamp()
    due = Schedule(cron="0 3 * * *").next_after(at_0259)
    assert datetime.fromtimestamp(due, timezone.utc) == datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    assert Schedule(cron="0 3 * * *").next_after(due) == due + 86400


@pytest.mark.parametrize("expr", ["61 3 * * *", "0 3 * *", "every night", "@daily", "0 3 * * * *", "* * 32 * *", "0 3 30 2 *"])
def test_bad_cron_expressions_are_refused(expr):
    with pytest.raises(ValueError, match="cron expression"):
        Schedule(cron=expr)


def test_a_schedule_is_one_of_the_two():
    assert Schedule(every=60).next_after(100.0) == 160.0
    with pytest.raises(ValueError):
        Schedule()
    with pytest.raises(ValueError):
        Schedule(every=60, cron="0 3 * * *")
