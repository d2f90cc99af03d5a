"""StreamHub: wakes this process's stream readers when their run or thread has news.

One LISTEN connection per process (the Listener) carries `lg_deploy_events` (a worker's batch,
or a run's end, naming the run and its thread) and `lg_deploy_finished`; readers poll as well,
so a lost notification or a reconnect costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from lg_deploy.db.listener import EVENTS_CHANNEL, FINISHED_CHANNEL, RECONNECTED, Listener


class StreamHub:
    """Keys (run or thread ids) to the events of the readers waiting on them."""

    def __init__(self, listener: Listener | None = None) -> None:
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._unsubscribe: list[Callable[[], None]] = []
        if listener is not None:
            for channel in (EVENTS_CHANNEL, FINISHED_CHANNEL):
                if channel in listener.channels:
                    self._unsubscribe.append(listener.subscribe(channel, self.notify))

    def close(self) -> None:
        """Stop listening."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[asyncio.Event]:
        """An event set whenever `key` has news, while the block runs."""
        woken = asyncio.Event()
        self._waiting[key].add(woken)
        try:
            yield woken
        finally:
            self._waiting[key].discard(woken)
            if not self._waiting[key]:
                del self._waiting[key]

    def notify(self, payload: str) -> None:
        """Wake the readers of the keys in a comma-separated payload ("*": everyone)."""
        keys: Iterable[str] = (
            list(self._waiting) if payload in (RECONNECTED, "*") else payload.split(",")
        )
        for key in keys:
            for woken in self._waiting.get(key, ()):
                woken.set()
