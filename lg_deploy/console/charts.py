"""SVG charts for the operator console: finished executions per minute, one execution's life."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from lg_deploy.models import FINAL_STATUSES

SVG_NS = "http://www.w3.org/2000/svg"

# Throughput layout (user units): the summary on top, the bars, the x labels below.
TP_WIDTH, TP_HEIGHT = 640, 210
TP_LEFT, TP_RIGHT, TP_TOP, TP_BOTTOM = 44, 12, 30, 30
TP_PLOT_W = TP_WIDTH - TP_LEFT - TP_RIGHT
TP_PLOT_H = TP_HEIGHT - TP_TOP - TP_BOTTOM

# Timeline layout: attempt labels on top, the band, the tick labels below.
TL_LABEL_W = 64  # room one "attempt N" label takes
TL_WIDTH, TL_HEIGHT = 640, 72
TL_LEFT, TL_RIGHT, TL_BAND_Y, TL_BAND_H = 8, 16, 18, 22
TL_PLOT_W = TL_WIDTH - TL_LEFT - TL_RIGHT
MIN_SEGMENT_W = 2.0  # a zero-length status still shows
MARKER_W = 4.0


@dataclass(frozen=True)
class MinuteCount:
    """Executions that finished in one minute: how many completed and how many failed."""

    minute: datetime  # start of the minute, timezone-aware UTC
    completed: int
    failed: int


@dataclass(frozen=True)
class TimelineEvent:
    """One status change of an execution (from lg_deploy.execution_events)."""

    at: datetime
    to_status: str  # QUEUED, RUNNING, COMPLETED, FAILED, INTERRUPTED
    attempt: int
    worker_id: str | None


def _esc(text: str) -> str:
    return escape(text, quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}"


def _rect(x: float, y: float, width: float, height: float, cls: str, title: str = "") -> str:
    geometry = f'x="{_num(x)}" y="{_num(y)}" width="{_num(width)}" height="{_num(height)}"'
    if not title:
        return f'<rect class="{_esc(cls)}" {geometry}/>'
    return f'<rect class="{_esc(cls)}" {geometry}><title>{_esc(title)}</title></rect>'


def _text(x: float, y: float, content: str, cls: str) -> str:
    return f'<text class="{_esc(cls)}" x="{_num(x)}" y="{_num(y)}">{_esc(content)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="axis" x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}"/>'


def _svg(kind: str, width: int, height: int, title: str, body: Sequence[str]) -> str:
    """The root element; the title id is derived from the content, so two charts differ."""
    inner = "".join(body)
    digest = hashlib.sha256((title + inner).encode()).hexdigest()[:10]
    ident = f"{kind}-title-{digest}"
    return (
        f'<svg xmlns="{SVG_NS}" class="chart chart-{kind}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{ident}">'
        f'<title id="{ident}">{_esc(title)}</title>{inner}</svg>'
    )


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _slots(
    counts: Sequence[MinuteCount], now: datetime, minutes: int
) -> list[tuple[datetime, int, int]]:
    """(minute, completed, failed) for each minute of the window, oldest first, gaps as zero."""
    last = _minute(now)
    first = last - timedelta(minutes=minutes - 1)
    totals: dict[datetime, tuple[int, int]] = {}
    for count in counts:
        minute = _minute(count.minute)
        if first <= minute <= last:
            completed, failed = totals.get(minute, (0, 0))
            totals[minute] = (completed + count.completed, failed + count.failed)
    window = [first + timedelta(minutes=i) for i in range(minutes)]
    return [(minute, *totals.get(minute, (0, 0))) for minute in window]


def _bar_group(index: int, slot: tuple[datetime, int, int], slot_w: float, top: int) -> str:
    minute, completed, failed = slot
    x = TP_LEFT + index * slot_w + slot_w * 0.1
    width = slot_w * 0.8
    base = TP_TOP + TP_PLOT_H
    completed_h = completed / top * TP_PLOT_H
    failed_h = failed / top * TP_PLOT_H
    label = f"{minute:%H:%M} UTC: {completed} completed, {failed} failed"
    parts = [f'<g class="bar-group"><title>{_esc(label)}</title>']
    if completed > 0:
        parts.append(_rect(x, base - completed_h, width, completed_h, "bar-completed"))
    if failed > 0:
        parts.append(_rect(x, base - completed_h - failed_h, width, failed_h, "bar-failed"))
    parts.append("</g>")
    return "".join(parts)


def _throughput_summary(completed: int, failed: int, minutes: int) -> str:
    window = "hour" if minutes == 60 else f"{minutes} minutes"
    finished = completed + failed
    if finished == 0:
        return f"no executions finished in the last {window}"
    rate = failed / finished * 100
    return f"{completed} completed, {failed} failed, {rate:.1f} % failed in the last {window}"


def throughput_svg(counts: Sequence[MinuteCount], *, now: datetime, minutes: int = 60) -> str:
    """Finished executions per minute over the last `minutes`.

    Stacked completed/failed bars, one slot per minute (the current partial minute last),
    missing minutes as zero; counts outside the window are ignored.
    """
    if minutes < 1:
        raise ValueError(f"minutes must be at least 1, not {minutes}")
    slots = _slots(counts, now, minutes)
    top = max([1, *(completed + failed for _, completed, failed in slots)])
    summary = _throughput_summary(sum(s[1] for s in slots), sum(s[2] for s in slots), minutes)
    base = TP_TOP + TP_PLOT_H
    label_y = TP_HEIGHT - 10
    body = [
        _text(TP_LEFT, 18, summary, "summary"),
        _line(TP_LEFT, TP_TOP, TP_LEFT, base),
        _line(TP_LEFT, base, TP_LEFT + TP_PLOT_W, base),
        _text(TP_LEFT - 6, TP_TOP + 4, str(top), "axis-label anchor-end"),
        _text(TP_LEFT - 6, base, "0", "axis-label anchor-end"),
        _text(TP_LEFT, label_y, f"-{minutes} min", "axis-label"),
        _text(TP_LEFT + TP_PLOT_W / 2, label_y, f"-{minutes // 2} min", "axis-label anchor-middle"),
        _text(TP_LEFT + TP_PLOT_W, label_y, "now", "axis-label anchor-end"),
    ]
    slot_w = TP_PLOT_W / minutes
    body.extend(_bar_group(i, slot, slot_w, top) for i, slot in enumerate(slots))
    title = f"Finished executions per minute: {summary}"
    return _svg("throughput", TP_WIDTH, TP_HEIGHT, title, body)


def human_duration(seconds: float) -> str:
    """Milliseconds under 1 s, seconds under 2 min, minutes under 2 h, else hours."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _describe(event: TimelineEvent, what: str) -> str:
    worker = f" on worker {event.worker_id}" if event.worker_id else ""
    return f"{event.to_status} {what}, attempt {event.attempt}{worker}"


def _x(moment: datetime, start: datetime, total: float) -> float:
    """The x of a moment; everything sits at the left edge when the life took no time."""
    if total <= 0:
        return float(TL_LEFT)
    return TL_LEFT + (moment - start).total_seconds() / total * TL_PLOT_W


def _segment(event: TimelineEvent, until: datetime, start: datetime, total: float) -> str:
    x = _x(event.at, start, total)
    width = max(MIN_SEGMENT_W, _x(until, start, total) - x)
    seconds = max(0.0, (until - event.at).total_seconds())
    title = _describe(event, human_duration(seconds))
    cls = f"seg seg-{event.to_status.lower()}"
    return _rect(x, TL_BAND_Y, width, TL_BAND_H, cls, title)


def _marker(event: TimelineEvent) -> str:
    x = TL_LEFT + TL_PLOT_W
    title = _describe(event, f"at {event.at.astimezone(UTC):%H:%M:%S} UTC")
    cls = f"marker marker-{event.to_status.lower()}"
    return _rect(x, TL_BAND_Y - 4, MARKER_W, TL_BAND_H + 8, cls, title)


def timeline_svg(events: Sequence[TimelineEvent], *, now: datetime) -> str:
    """The execution's life as one horizontal band, attempts labelled.

    A segment per status from each event to the next; the last one stays open until `now`
    unless it is final, which shows as a marker at the end instead.
    """
    ordered = sorted(events, key=lambda event: event.at)  # stable: ties keep their order
    if not ordered:
        body = [_text(TL_LEFT, TL_BAND_Y + 15, "no status changes recorded", "summary")]
        return _svg("timeline", TL_WIDTH, TL_HEIGHT, "Execution timeline: no events", body)
    start, last = ordered[0].at, ordered[-1]
    final = last.to_status in FINAL_STATUSES
    end = last.at if final else max(last.at, now)
    total = (end - start).total_seconds()
    tick_y = TL_BAND_Y + TL_BAND_H + 16
    body = [_line(TL_LEFT, TL_BAND_Y + TL_BAND_H, TL_LEFT + TL_PLOT_W, TL_BAND_Y + TL_BAND_H)]
    attempt, label_end = 0, float("-inf")  # attempt 0: not claimed yet, left unlabelled
    for index, event in enumerate(ordered[:-1] if final else ordered):
        until = ordered[index + 1].at if index + 1 < len(ordered) else end
        body.append(_segment(event, until, start, total))
        x = _x(event.at, start, total)
        if event.attempt != attempt and x >= label_end:  # a label never overlaps the last
            attempt, label_end = event.attempt, x + TL_LABEL_W
            body.append(_text(x, TL_BAND_Y - 6, f"attempt {attempt}", "axis-label attempt-label"))
    if final:
        body.append(_marker(last))
    body.append(_text(TL_LEFT, tick_y, "0", "axis-label"))
    body.append(_text(TL_LEFT + TL_PLOT_W, tick_y, human_duration(total), "axis-label anchor-end"))
    state = "ended" if final else "now"
    title = (
        f"Execution timeline: {len(ordered)} status changes over {human_duration(total)}, "
        f"{state} {last.to_status}"
    )
    return _svg("timeline", TL_WIDTH, TL_HEIGHT, title, body)
