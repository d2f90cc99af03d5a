"""EventSink: a run's stream events, group-committed to its EventLog by one flushing task.

`emit` never waits: events go to a buffer, and one task appends whatever has gathered while
its previous batch was being written, so a quiet run commits each event at once (lowest
latency) and a chatty one commits batches (one INSERT and one NOTIFY per batch, not per token:
a NOTIFY serialises commits cluster-wide).
"""

from __future__ import annotations

import asyncio
import logging

from lg_deploy.streams.protocol import Attempt, EventLog

logger = logging.getLogger(__name__)

MAX_BATCH = 500
RETRY_SECONDS = (0.05, 2.0)
CLOSE_SECONDS = 30.0


class EventSink:
    """Buffers one attempt's events and appends them in order, batch by batch."""

    def __init__(self, log: EventLog, attempt: Attempt) -> None:
        self._log = log
        self._attempt = attempt
        self._buffer: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.stale = False  # the attempt no longer holds the run: its events are dropped
        self.emitted = 0

    def emit(self, event: str, data: str) -> None:
        """Queue one event; the flushing task appends it soon."""
        if self.stale:
            return
        self._buffer.append((event, data))
        self.emitted += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="lg-deploy-stream-flush")

    async def close(self, timeout_seconds: float = CLOSE_SECONDS) -> None:
        """Wait until every event emitted so far is appended (or `timeout_seconds` passed)."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_seconds)
        except TimeoutError:
            logger.warning("stream events not all recorded in %.0f s; dropping", timeout_seconds)
            task.cancel()

    async def _flush(self) -> None:
        shortest, longest = RETRY_SECONDS
        delay = shortest
        while self._buffer and not self.stale:
            batch = self._buffer[:MAX_BATCH]
            try:
                kept = await self._log.append(self._attempt, batch)
            except Exception as error:
                logger.warning("could not record stream events (%s); retrying", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            delay = shortest
            del self._buffer[: len(batch)]
            if kept < len(batch):
                self.stale = True
                self._buffer.clear()
                logger.warning("stream events dropped: the run passed to another attempt")
