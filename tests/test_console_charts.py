"""The console's SVG charts: throughput per minute and an execution's timeline."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from lg_deploy.console.charts import MinuteCount, TimelineEvent, throughput_svg, timeline_svg

pytestmark = pytest.mark.req("CONSOLE-OVERVIEW", "CONSOLE-EXECUTION")

NS = {"svg": "http://www.w3.org/2000/svg"}
NOW = datetime(2025, 3, 1, 12, 30, 20, tzinfo=UTC)
THIS_MINUTE = NOW.replace(second=0)


def minute_ago(n: int) -> datetime:
    return THIS_MINUTE - timedelta(minutes=n)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter(f"{{{NS['svg']}}}text")]


def bar_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iterfind("svg:g", NS) if g.get("class") == "bar-group"]


def bar_height(group: ET.Element) -> float:
    return sum(float(r.get("height", "0")) for r in group.iterfind("svg:rect", NS))


def segments(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iterfind("svg:rect", NS) if "seg" in r.get("class", "").split()]


def event(
    seconds: float, status: str, attempt: int = 1, worker: str | None = "w:1"
) -> TimelineEvent:
    return TimelineEvent(NOW + timedelta(seconds=seconds), status, attempt, worker)


def assert_accessible_and_unstyled(svg: str) -> None:
    root = parse(svg)
    title = root.find("svg:title", NS)
    assert title is not None
    assert title.text
    assert root.get("aria-labelledby") == title.get("id")
    assert root.get("role") == "img"
    assert root.get("viewBox")
    assert root.get("width")
    assert root.get("height")
    assert "chart" in (root.get("class") or "").split()
    assert "style" not in svg
    for el in root.iter():
        assert set(el.attrib) <= {
            "class",
            "x",
            "y",
            "width",
            "height",
            "x1",
            "y1",
            "x2",
            "y2",
            "id",
            "viewBox",
            "role",
            "aria-labelledby",
        }


def test_throughput_parses_as_accessible_unstyled_svg() -> None:
    """The throughput chart is well-formed XML, labelled for screen readers, styled by class."""
    svg = throughput_svg([MinuteCount(minute_ago(3), 4, 1)], now=NOW)
    assert_accessible_and_unstyled(svg)
    assert {"-60 min", "-30 min", "now", "5", "0"} <= set(texts(parse(svg)))


def test_throughput_has_one_slot_per_minute_even_when_sparse() -> None:
    """Sparse counts still give exactly `minutes` bar slots, with empty minutes at zero."""
    counts = [MinuteCount(minute_ago(0), 1, 0), MinuteCount(minute_ago(40), 0, 2)]
    groups = bar_groups(parse(throughput_svg(counts, now=NOW)))
    assert len(groups) == 60
    assert [i for i, g in enumerate(groups) if bar_height(g) > 0] == [19, 59]
    assert len(bar_groups(parse(throughput_svg(counts, now=NOW, minutes=15)))) == 15
    last = bar_groups(parse(throughput_svg(counts, now=NOW)))[-1].find("svg:title", NS)
    assert last is not None
    assert last.text == "12:30 UTC: 1 completed, 0 failed"


def test_throughput_ignores_counts_outside_the_window() -> None:
    """Counts older than the window (or in the future) draw nothing and count in no total."""
    counts = [MinuteCount(minute_ago(60), 50, 50), MinuteCount(minute_ago(-1), 7, 7)]
    root = parse(throughput_svg(counts, now=NOW))
    assert all(bar_height(g) == 0 for g in bar_groups(root))
    assert "no executions finished in the last hour" in texts(root)


def test_throughput_bars_are_proportional_and_stacked() -> None:
    """A minute with twice the finished executions has twice the height; failed sit on completed."""
    counts = [MinuteCount(minute_ago(5), 1, 1), MinuteCount(minute_ago(2), 3, 1)]
    groups = bar_groups(parse(throughput_svg(counts, now=NOW)))
    small, big = groups[-6], groups[-3]
    assert bar_height(big) == pytest.approx(2 * bar_height(small), abs=0.02)
    rects = {r.get("class"): r for r in big.iterfind("svg:rect", NS)}
    done, failed = rects["bar-completed"], rects["bar-failed"]
    assert float(done.get("height", "")) == pytest.approx(
        3 * float(failed.get("height", "")), abs=0.02
    )
    assert float(failed.get("y", "")) + float(failed.get("height", "")) == pytest.approx(
        float(done.get("y", "")), abs=0.02
    )


def test_throughput_summary_gives_failure_rate() -> None:
    """3 failed of 12 finished reads as a 25.0 % failure rate, with the totals and the y maximum."""
    counts = [MinuteCount(minute_ago(1), 5, 2), MinuteCount(minute_ago(10), 4, 1)]
    lines = texts(parse(throughput_svg(counts, now=NOW)))
    assert "9 completed, 3 failed, 25.0 % failed in the last hour" in lines
    assert "7" in lines  # the y-axis maximum is the busiest minute's total


def test_throughput_empty_says_no_executions() -> None:
    """No input says so, and the y maximum stays at least 1 (no division by zero)."""
    root = parse(throughput_svg([], now=NOW))
    assert "no executions finished in the last hour" in texts(root)
    assert "1" in texts(root)
    assert len(bar_groups(root)) == 60


def test_throughput_is_deterministic() -> None:
    """The same input renders byte-for-byte the same SVG."""
    counts = [MinuteCount(minute_ago(1), 5, 2)]
    assert throughput_svg(counts, now=NOW) == throughput_svg(list(counts), now=NOW)


def test_timeline_segments_in_order_with_proportional_widths() -> None:
    """Segments follow the events in time order, each as wide as its status lasted."""
    events = [
        event(3, "RUNNING", 1),
        event(0, "QUEUED", 1),
        event(9, "QUEUED", 1),
        event(10, "RUNNING", 2, "host:1:abc"),
        event(22, "COMPLETED", 2, "host:1:abc"),
    ]
    svg = timeline_svg(events, now=NOW + timedelta(hours=1))
    assert_accessible_and_unstyled(svg)
    segs = segments(parse(svg))
    classes = [s.get("class") for s in segs]
    assert classes == ["seg seg-queued", "seg seg-running", "seg seg-queued", "seg seg-running"]
    widths = [float(s.get("width", "")) for s in segs]
    for width, seconds in zip(widths, (3, 6, 1, 12), strict=True):
        assert width == pytest.approx(widths[0] / 3 * seconds, abs=0.02)
    xs = [float(s.get("x", "")) for s in segs]
    assert xs == sorted(xs)
    title = segs[3].find("svg:title", NS)
    assert title is not None
    assert title.text == "RUNNING 12.0 s, attempt 2 on worker host:1:abc"
    assert {"attempt 1", "attempt 2", "0", "22.0 s"} <= set(texts(parse(svg)))


def test_timeline_unfinished_running_extends_to_now() -> None:
    """A last RUNNING segment stays open until `now`, reaching the right end of the axis."""
    events = [event(0, "QUEUED"), event(0.5, "RUNNING")]
    root = parse(timeline_svg(events, now=NOW + timedelta(seconds=2)))
    queued, running = segments(root)
    assert float(running.get("width", "")) == pytest.approx(
        3 * float(queued.get("width", "")), abs=0.02
    )
    assert root.find("svg:rect[@class='marker marker-running']", NS) is None
    assert "2.0 s" in texts(root)
    title = running.find("svg:title", NS)
    assert title is not None
    assert title.text == "RUNNING 1.5 s, attempt 1 on worker w:1"


def test_timeline_final_completed_does_not_extend_to_now() -> None:
    """A final COMPLETED ends the axis at its own time and shows as a marker, not a segment."""
    events = [event(0, "QUEUED"), event(0.25, "RUNNING"), event(0.75, "COMPLETED")]
    root = parse(timeline_svg(events, now=NOW + timedelta(days=3)))
    assert [s.get("class") for s in segments(root)] == ["seg seg-queued", "seg seg-running"]
    queued, running = segments(root)
    assert float(running.get("width", "")) == pytest.approx(
        2 * float(queued.get("width", "")), abs=0.02
    )
    marker = [
        r for r in root.iterfind("svg:rect", NS) if r.get("class") == "marker marker-completed"
    ]
    assert len(marker) == 1
    assert float(marker[0].get("x", "")) == pytest.approx(
        float(running.get("x", "")) + float(running.get("width", "")), abs=0.02
    )
    assert "750 ms" in texts(root)


def test_timeline_zero_duration_does_not_crash() -> None:
    """Events all at one instant still draw minimum-width segments and a 0 ms axis."""
    events = [event(0, "QUEUED"), event(0, "RUNNING"), event(0, "FAILED", worker=None)]
    root = parse(timeline_svg(events, now=NOW))
    segs = segments(root)
    assert [s.get("class") for s in segs] == ["seg seg-queued", "seg seg-running"]
    assert all(float(s.get("width", "")) > 0 for s in segs)
    assert "0 ms" in texts(root)
    lone = parse(timeline_svg([event(0, "RUNNING")], now=NOW - timedelta(seconds=5)))
    assert len(segments(lone)) == 1
    assert "no status changes recorded" in texts(parse(timeline_svg([], now=NOW)))


def test_timeline_escapes_worker_id() -> None:
    """An untrusted worker id appears only escaped, never as markup."""
    hostile = '<script>x</script>"'
    svg = timeline_svg([event(0, "RUNNING", 1, hostile)], now=NOW + timedelta(seconds=1))
    assert "<script>" not in svg
    assert "&lt;script&gt;x&lt;/script&gt;&quot;" in svg
    root = parse(svg)
    assert root.find(".//svg:script", NS) is None
    title = segments(root)[0].find("svg:title", NS)
    assert title is not None
    assert title.text == f"RUNNING 1.0 s, attempt 1 on worker {hostile}"


def test_timeline_durations_read_human() -> None:
    """The total reads in ms under 1 s, s under 2 min, else minutes or hours."""
    for seconds, label in ((0.2, "200 ms"), (90, "90.0 s"), (600, "10.0 min"), (10800, "3.0 h")):
        svg = timeline_svg([event(0, "QUEUED"), event(seconds, "FAILED")], now=NOW)
        assert label in texts(parse(svg))
