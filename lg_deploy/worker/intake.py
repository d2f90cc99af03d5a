"""Intake: feeds a worker's free slots from its Claimer, claiming ahead at a fast pace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable

from lg_deploy.models import ExecutionState
from lg_deploy.queue.protocol import Claimer
from lg_deploy.tasks import cancel_and_wait, wait_for_event
from lg_deploy.worker.pace import ClaimPace

logger = logging.getLogger(__name__)

CLAIM_RETRY_SECONDS = 1.0


class Intake:
    """Claims one row for each slot waiting in `dequeue`, plus some ahead, in one claim.

    It claims as many due rows as there are callers waiting, and waits for the claimer's wake
    (NOTIFY, a new row, one coming due) or `poll_interval_seconds`. At a fast pace it also
    claims ahead what the slots will start soon (ClaimPace, at most `claim_ahead`), so that
    slots finishing together find rows waiting. Rows claimed but not yet taken are the worker's
    to renew (`held`); any no slot takes within `hold_seconds` are released. (`pace` replaces
    the ClaimPace, as tests do.)
    """

    def __init__(
        self,
        claimer: Claimer,
        *,
        poll_interval_seconds: float,
        claim_ahead: int,
        hold_seconds: float,
        pace: ClaimPace | None = None,
    ) -> None:
        self.claimer = claimer
        self._poll_interval_seconds = poll_interval_seconds
        self._pace = pace or ClaimPace(claim_ahead)
        self._ahead = 0  # as of the last claim
        self._hold_seconds = hold_seconds
        self._ready: deque[str] = deque()
        self._claimed_at: dict[str, float] = {}  # ids in _ready: when claimed (monotonic)
        self._states: dict[str, ExecutionState] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._demand = asyncio.Event()
        self._claiming: asyncio.Task[None] | None = None

    async def dequeue(self) -> ExecutionState:
        """Wait until a row is claimed for this worker (RUNNING, leased) and return it."""
        if self._claiming is None:
            self._claiming = asyncio.create_task(self._claim_loop(), name="lg-deploy-claimer")
        while not self._ready:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            self._demand.set()
            try:
                await getter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._ready:
                    self._wake_getters()
                raise
        execution_id = self._ready.popleft()
        del self._claimed_at[execution_id]
        self._pace.started()
        if self._ahead and len(self._ready) <= self._ahead // 2:
            self._demand.set()  # claim the next rows ahead before these run out
        return self._states.pop(execution_id)

    def wake(self) -> None:
        """Rows may be due: claim now instead of at the next poll."""
        self.claimer.wake()

    def held(self) -> dict[str, int]:
        """Rows claimed for this worker that no slot has taken yet, id -> attempt: to renew."""
        return {execution_id: self._states[execution_id].attempts for execution_id in self._ready}

    def forget(self, execution_id: str, *, claimed_before: float) -> bool:
        """Drop an untaken row claimed before `claimed_before` (monotonic) whose lease was lost.

        False if it is not waiting here, or was claimed again since (a newer lease).
        """
        claimed_at = self._claimed_at.get(execution_id)
        if claimed_at is None or claimed_at >= claimed_before:
            return False
        return self._take(execution_id) is not None

    async def release(self, execution_ids: Iterable[str]) -> None:
        """Release untaken rows: QUEUED again, or FAILED "cancelled" if a cancel was asked."""
        states = [state for i in execution_ids if (state := self._take(i)) is not None]
        if states:
            await self.claimer.release(states)

    async def close(self) -> None:
        """Stop claiming; release claimed rows no slot took (QUEUED again, claim uncounted)."""
        await cancel_and_wait(self._claiming)
        self._claiming = None
        for getter in self._getters:
            getter.cancel()
        self._getters.clear()
        await self.release(list(self._ready))
        self._states.clear()

    def _take(self, execution_id: str) -> ExecutionState | None:
        """Remove an untaken row from the ready line; its state, or None if not there."""
        if self._claimed_at.pop(execution_id, None) is None:
            return None
        self._ready.remove(execution_id)
        return self._states.pop(execution_id, None)

    def _wake_getters(self) -> None:
        available = len(self._ready)
        while self._getters and available:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                available -= 1

    def _wanted(self) -> int:
        """Rows to claim now: one per waiting slot plus the pace's ahead, or 0 while enough wait.

        Claims ahead go out once half of what was ahead is taken, so they come in batches.
        """
        self._ahead = self._pace.ahead()
        short = len(self._getters) - len(self._ready)
        if short <= 0 and len(self._ready) > self._ahead // 2:
            return 0
        return short + self._ahead

    async def _claim_loop(self) -> None:
        while True:
            await self._release_stale()
            wanted = self._wanted()
            if wanted <= 0:
                self._demand.clear()
                await self._wait_for_demand()
                continue
            try:
                claimed = await self.claimer.claim(wanted)
            except Exception as error:
                logger.warning("claim failed (%s); retrying in %.1f s", error, CLAIM_RETRY_SECONDS)
                await asyncio.sleep(CLAIM_RETRY_SECONDS)
                continue
            now = time.monotonic()
            for state in claimed:
                self._ready.append(state.execution_id)
                self._claimed_at[state.execution_id] = now
                self._states[state.execution_id] = state
            self._wake_getters()
            if len(claimed) < wanted:
                await self.claimer.wait(self._poll_interval_seconds)

    async def _wait_for_demand(self) -> None:
        """Until a slot asks, or the oldest untaken row is due to be released."""
        if not self._ready:
            await self._demand.wait()
            return
        due = self._claimed_at[self._ready[0]] + self._hold_seconds - time.monotonic()
        await wait_for_event(self._demand, max(0.0, due))

    async def _release_stale(self) -> None:
        """Release rows claimed ahead that no slot took within the hold time."""
        limit = time.monotonic() - self._hold_seconds
        if not self._ready or self._claimed_at[self._ready[0]] > limit:  # the oldest is first
            return
        stale = [i for i in self._ready if self._claimed_at[i] <= limit]
        if stale:
            logger.info("releasing %d claimed executions no slot took in time", len(stale))
            await self.release(stale)
