"""Waiting for an execution to become final: woken by NOTIFY, with a polling fallback."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from lg_deploy.db.listener import FINISHED_CHANNEL, RECONNECTED, Listener
from lg_deploy.models import ExecutionState
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.tasks import wait_for_event


class FinishWaiter:
    """Answers "wait until this execution is final, or until the timeout" without client polling."""

    def __init__(
        self, store: ExecutionStore, listener: Listener | None, *, poll_seconds: float
    ) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._unsubscribe = (
            listener.subscribe(FINISHED_CHANNEL, self._on_finished) if listener else None
        )

    def close(self) -> None:
        """Stop listening for finished executions."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def wait(self, execution_id: str, timeout_seconds: float) -> ExecutionState | None:
        """The execution once final, or as it is when the timeout passes; None if unknown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        woken = asyncio.Event()
        self._waiting[execution_id].add(woken)
        try:
            while True:
                woken.clear()
                state = await self._store.get(execution_id)
                remaining = deadline - loop.time()
                if state is None or state.is_final or remaining <= 0:
                    return state
                await wait_for_event(woken, min(remaining, self._poll_seconds))
        finally:
            self._waiting[execution_id].discard(woken)
            if not self._waiting[execution_id]:
                del self._waiting[execution_id]

    def _on_finished(self, payload: str) -> None:
        ids = self._waiting.keys() if payload == RECONNECTED else payload.split(",")
        for execution_id in list(ids):
            for event in self._waiting.get(execution_id, ()):
                event.set()
