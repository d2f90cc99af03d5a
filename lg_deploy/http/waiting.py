"""Waiting for an execution to become final: woken by NOTIFY, with a polling fallback."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict

from lg_deploy.db.listener import FINISHED_CHANNEL, RECONNECTED, Listener
from lg_deploy.models import ExecutionState
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.tasks import wait_for_event

# Executions whose finish was announced lately, remembered so that a wait starting from a state
# it was handed (no query) still sees a finish announced before it began listening.
RECENTLY_FINISHED = 10_000
# After a notice naming no ids (too many finished at once, or the listener reconnected), a
# handed state is not trusted for this long: the wait queries first.
WILDCARD_DOUBT_SECONDS = 1.0


class FinishWaiter:
    """Answers "wait until this execution is final, or until the timeout" without client polling."""

    def __init__(
        self, store: ExecutionStore, listener: Listener | None, *, poll_seconds: float
    ) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._wildcard_at = float("-inf")
        self._unsubscribe = (
            listener.subscribe(FINISHED_CHANNEL, self._on_finished) if listener else None
        )

    def close(self) -> None:
        """Stop listening for finished executions."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def wait(
        self,
        execution_id: str,
        timeout_seconds: float,
        *,
        known: ExecutionState | None = None,
    ) -> ExecutionState | None:
        """The execution once final, or as it is when the timeout passes; None if unknown.
        `known`: its state as just read or written, so the first look needs no query."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        woken = asyncio.Event()
        self._waiting[execution_id].add(woken)
        try:
            doubt = execution_id in self._finished
            doubt = doubt or loop.time() - self._wildcard_at < WILDCARD_DOUBT_SECONDS
            state = None if doubt else known
            while True:
                woken.clear()
                if state is None:
                    state = await self._store.get(execution_id)
                remaining = deadline - loop.time()
                if state is None or state.is_final or remaining <= 0:
                    return state
                await wait_for_event(woken, min(remaining, self._poll_seconds))
                state = None
        finally:
            self._waiting[execution_id].discard(woken)
            if not self._waiting[execution_id]:
                del self._waiting[execution_id]

    def _on_finished(self, payload: str) -> None:
        ids = self._waiting.keys() if payload == RECONNECTED else payload.split(",")
        if payload == RECONNECTED:
            self._wildcard_at = asyncio.get_running_loop().time()
        else:
            for execution_id in ids:
                self._finished[execution_id] = None
            while len(self._finished) > RECENTLY_FINISHED:
                self._finished.popitem(last=False)
        for execution_id in list(ids):
            for event in self._waiting.get(execution_id, ()):
                event.set()
