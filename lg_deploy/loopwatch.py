"""The event loop's watchdog: measures its lag, and names the code that blocks it while it does.

A tick task on the loop notes each time it runs; a daemon thread looks at those notes. When the
loop has not ticked for `warn_seconds`, something holds it (blocking code in an async node,
most often): the thread logs a warning naming the frame the loop thread is in and the
executions running here, and again each time the stall doubles, while the API, lease renewals
and every other run of this process wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lg_deploy.tasks import cancel_and_wait

if TYPE_CHECKING:
    from lg_deploy.metrics import Metrics

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.1
ADVICE = (
    "blocking code in an async node stalls this process's API, lease renewals and every other"
    " run: make the node a plain def (LangGraph runs sync nodes in a thread) or wrap the call"
    " in asyncio.to_thread"
)


class LoopWatch:
    """Ticks every `tick_seconds` on the loop; a thread warns once a tick is `warn_seconds` late.

    `running` names what the process runs (called from the thread while the loop is stuck);
    `on_stall(seconds)` is called from the thread while a stall lasts, about every tick.
    """

    def __init__(
        self,
        *,
        running: Callable[[], list[str]],
        warn_seconds: float,
        tick_seconds: float = TICK_SECONDS,
        metrics: Metrics | None = None,
        on_stall: Callable[[float], None] | None = None,
    ) -> None:
        self._running = running
        self._warn_seconds = warn_seconds
        self._tick_seconds = tick_seconds
        self._metrics = metrics
        self._on_stall = on_stall
        self._last_tick = time.monotonic()
        self._loop_thread_id = threading.get_ident()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.stalls = 0

    def start(self) -> None:
        """Start ticking on the running loop and watching from a daemon thread."""
        self._loop_thread_id = threading.get_ident()
        self._last_tick = time.monotonic()
        self._stopped.clear()
        self._task = asyncio.create_task(self._tick(), name="lg-deploy-loopwatch")
        self._thread = threading.Thread(target=self._watch, name="lg-deploy-loopwatch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop ticking and watching."""
        self._stopped.set()
        await cancel_and_wait(self._task)
        self._task = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def stalled_seconds(self) -> float:
        """How long the loop has gone without a tick beyond the tick interval (0 when on time)."""
        return max(0.0, time.monotonic() - self._last_tick - self._tick_seconds)

    async def _tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._tick_seconds)
            now = time.monotonic()
            lag = max(0.0, now - before - self._tick_seconds)
            self._last_tick = now
            if self._metrics is not None:
                self._metrics.loop_lag_seconds.observe(lag)
            if lag >= self._warn_seconds:
                logger.warning("event loop was blocked for %.1f s; %s", lag, ADVICE)

    def _watch(self) -> None:
        next_warning = self._warn_seconds
        while not self._stopped.wait(self._tick_seconds / 2):
            stalled = self.stalled_seconds()
            if stalled < self._warn_seconds:
                next_warning = self._warn_seconds
                continue
            if self._on_stall is not None:
                self._on_stall(stalled)
            if stalled >= next_warning:
                if next_warning == self._warn_seconds:
                    self.stalls += 1
                    if self._metrics is not None:
                        self._metrics.loop_stalls.inc()
                self._warn(stalled)
                next_warning *= 2

    def _warn(self, stalled: float) -> None:
        try:
            running = self._running()
        except Exception:  # the loop thread may be changing it after all
            running = []
        logger.warning(
            "event loop blocked for %.1f s so far, in %s; running here: %s; %s",
            stalled,
            self._blocked_in(),
            ", ".join(running) or "no executions",
            ADVICE,
        )

    def _blocked_in(self) -> str:
        """Where the loop thread is now: its innermost frame, and the innermost of user code."""
        frame = sys._current_frames().get(self._loop_thread_id)
        if frame is None:
            return "an unknown place"
        stack = traceback.extract_stack(frame)
        where = _place(stack[-1])
        user = next((f for f in reversed(stack) if not _is_library(f.filename)), None)
        if user is not None and user is not stack[-1]:
            where += f", called from {_place(user)}"
        return where


def _place(frame: traceback.FrameSummary) -> str:
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


_LIBRARY_ROOTS = tuple(
    {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    | {str(Path(__file__).resolve().parent)}
)


def _is_library(filename: str) -> bool:
    """True for the standard library, installed packages and lg-deploy itself."""
    return filename.startswith(_LIBRARY_ROOTS) or filename.startswith("<")
