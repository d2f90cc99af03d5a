"""Cron schedules: the next tick in a time zone, and which due ticks a pass runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lg_deploy.crons.schedule import ScheduleError, check, due_ticks, next_tick

pytestmark = pytest.mark.req("CRON-SCHEDULE")

T0 = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)


def test_the_next_tick_is_strictly_after_the_moment_given() -> None:
    """5 fields tick on the minute, 6 fields (seconds first) on the second; a moment on a tick
    gives the following one."""
    assert next_tick("*/5 * * * *", "UTC", T0) == T0 + timedelta(minutes=5)
    assert next_tick("*/5 * * * *", "UTC", T0 + timedelta(seconds=1)) == T0 + timedelta(minutes=5)
    assert next_tick("* * * * * *", "UTC", T0) == T0 + timedelta(seconds=1)
    assert next_tick("30 * * * * *", "UTC", T0) == T0 + timedelta(seconds=30)


def test_a_schedule_is_read_in_its_time_zone_across_daylight_saving() -> None:
    """09:00 every day in New York is 14:00 UTC on 7 March 2026 and 13:00 UTC from the 8th."""
    before = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
    first = next_tick("0 9 * * *", "America/New_York", before)
    second = next_tick("0 9 * * *", "America/New_York", first)
    third = next_tick("0 9 * * *", "America/New_York", second)
    assert [first.hour, second.hour, third.hour] == [14, 13, 13]


@pytest.mark.parametrize(
    ("schedule", "zone"),
    [("61 * * * *", "UTC"), ("* * *", "UTC"), ("* * * * *", "Mars/Olympus")],
)
def test_a_schedule_or_zone_that_cannot_be_read_is_a_schedule_error(
    schedule: str, zone: str
) -> None:
    """A bad field, a wrong field count or an unknown zone raise ScheduleError saying which."""
    with pytest.raises(ScheduleError):
        check(schedule, zone)


def test_ticks_missed_by_less_than_the_grace_each_run_once() -> None:
    """Three ticks a poll came late for all run, and the cron goes on from the next one."""
    due = due_ticks("* * * * * *", "UTC", T0, T0 + timedelta(seconds=2.5), missed_seconds=60)
    assert due.run == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    assert due.next_run_at == T0 + timedelta(seconds=3)


def test_ticks_missed_while_everything_was_down_run_once_in_all() -> None:
    """An hour of minute ticks missed beyond the grace gives one run, the latest missed tick."""
    now = T0 + timedelta(hours=1, seconds=30)
    due = due_ticks("* * * * *", "UTC", T0, now, missed_seconds=10)
    assert due.run == [T0 + timedelta(hours=1)]
    assert due.next_run_at == T0 + timedelta(hours=1, minutes=1)


def test_no_tick_runs_past_the_end_time_and_the_cron_then_has_no_next_tick() -> None:
    """Ticks after end_time are dropped and next_run_at becomes None."""
    end = T0 + timedelta(seconds=1)
    due = due_ticks(
        "* * * * * *", "UTC", T0, T0 + timedelta(seconds=3), missed_seconds=60, end_time=end
    )
    assert due.run == [T0, end]
    assert due.next_run_at is None
