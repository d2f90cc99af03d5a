"""The lease keeper: renews this worker's leases in one statement and recovers expired ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from lg_deploy.metrics import Metrics
from lg_deploy.models import ExecutionStatus, LeaseRenewal
from lg_deploy.queue.protocol import ExecutionQueue
from lg_deploy.store.protocol import ExecutionStore

logger = logging.getLogger(__name__)

# Renew this many times per lease, so a few missed beats do not lose it.
RENEWALS_PER_LEASE = 4


class LeaseKeeper:
    """Every lease/4 seconds renews held leases; every recovery interval hands back dead ones."""

    def __init__(
        self,
        store: ExecutionStore,
        queue: ExecutionQueue,
        *,
        worker_id: str,
        held: Callable[[], dict[str, int]],
        on_renewal: Callable[[LeaseRenewal, dict[str, int]], None],
        lease_seconds: float,
        recovery_interval_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._worker_id = worker_id
        self._held = held
        self._on_renewal = on_renewal
        self._lease_seconds = lease_seconds
        self._beat_seconds = lease_seconds / RENEWALS_PER_LEASE
        self._recovery_interval_seconds = recovery_interval_seconds
        self._metrics = metrics
        self._now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.recovered_total = 0

    def start(self) -> None:
        """Start renewing and recovering in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lg-deploy-leases")

    def beat_now(self) -> None:
        """Renew (and so learn of cancel requests) at once rather than at the next beat."""
        self._now.set()

    async def stop(self) -> None:
        """Stop renewing; leases still held then expire and are recovered by other workers."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_recovery = loop.time()
        while True:
            self._now.clear()  # before renewing: a request arriving meanwhile is kept
            await self._renew()
            if loop.time() >= next_recovery:
                await self._recover()
                next_recovery = loop.time() + self._recovery_interval_seconds
            wait = min(self._beat_seconds, max(0.0, next_recovery - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._now.wait(), wait)

    async def _renew(self) -> None:
        held = self._held()
        if not held:
            return
        try:
            renewal = await self._store.renew_leases(self._worker_id, held, self._lease_seconds)
        except Exception as error:
            logger.warning("lease renewal failed (%s); will retry", error)
            return
        self._on_renewal(renewal, held)

    async def _recover(self) -> None:
        try:
            recovered = await self._store.recover_expired()
        except Exception as error:
            logger.warning("lease recovery failed (%s); will retry", error)
            return
        for execution_id, status in recovered:
            self.recovered_total += 1
            if self._metrics is not None:
                self._metrics.lease_recoveries.labels(status.value).inc()
            logger.warning(
                "recovered execution %s with an expired lease: now %s", execution_id, status
            )
            if status == ExecutionStatus.QUEUED:
                with contextlib.suppress(Exception):
                    await self._queue.enqueue(execution_id)
