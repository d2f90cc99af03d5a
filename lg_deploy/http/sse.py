"""Server-sent events as the platform frames them: CRLF lines, event, data, id; heartbeats."""

from __future__ import annotations

HEARTBEAT = b": heartbeat\r\n\r\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"


def frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One event: its name, its one-line JSON data and its id (the resume point)."""
    text = f"event: {event}\r\ndata: {data}\r\n"
    if event_id is not None:
        text += f"id: {event_id}\r\n"
    return (text + "\r\n").encode()


def resume_point(header: str | None) -> int | None:
    """The event id a Last-Event-ID asks to resume after: -1 and - mean from the start (0);
    None without the header; ValueError for anything but an event id."""
    if header is None or not header.strip():
        return None
    text = header.strip()
    if text in ("-1", "-"):
        return 0
    number = int(text)
    if number < 0:
        raise ValueError(text)
    return number
