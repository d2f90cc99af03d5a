"""Cron schedules read by cronsim: validation, the next tick, and which missed ticks to run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MAX_TICKS_PER_PASS = 100


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be read; the message says why."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ScheduleError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not an IANA time zone name") from None


def check(schedule: str, timezone: str) -> None:
    """Nothing when the schedule (5 fields, or 6 with seconds first) and zone can be read."""
    next_tick(schedule, timezone, datetime.now(UTC))


def next_tick(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after `after`, in UTC; ScheduleError for a bad schedule."""
    fields = schedule.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(f"a schedule has 5 fields (or 6, seconds first), not {len(fields)}")
    local = after.astimezone(zone(timezone))
    if len(fields) == 5:  # minute precision: start from the minute, so a tick at `after` is past
        local = local.replace(second=0, microsecond=0)
    try:
        ticks = CronSim(" ".join(fields), local)
        tick = next(ticks)
        while tick <= after:
            tick = next(ticks)
    except (CronSimError, StopIteration) as error:
        raise ScheduleError(f"schedule {schedule!r} cannot be read: {error}") from None
    return tick.astimezone(UTC)


@dataclass(frozen=True)
class Ticks:
    """The ticks of one pass that get an execution, and where the cron goes on from."""

    run: list[datetime]
    next_run_at: datetime | None


def due_ticks(
    schedule: str,
    timezone: str,
    next_run_at: datetime,
    now: datetime,
    *,
    missed_seconds: float,
    end_time: datetime | None = None,
) -> Ticks:
    """The ticks from `next_run_at` to `now` to run: each one less than `missed_seconds` late;
    of older ones (everything was down) only the latest, once; none past `end_time`. The next
    tick is the first after `now` (None past `end_time`)."""
    ticks: list[datetime] = []
    tick = next_run_at
    while tick <= now and len(ticks) < MAX_TICKS_PER_PASS:
        if end_time is None or tick <= end_time:
            ticks.append(tick)
        tick = next_tick(schedule, timezone, tick)
    if tick <= now:
        tick = next_tick(schedule, timezone, now)
    cutoff = now - timedelta(seconds=missed_seconds)
    recent = [t for t in ticks if t >= cutoff]
    run = recent if recent or not ticks else ticks[-1:]
    following = None if end_time is not None and tick > end_time else tick
    return Ticks(run, following)
