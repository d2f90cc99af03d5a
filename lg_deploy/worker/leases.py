"""The lease keeper: renews this worker's leases in one statement and recovers expired ones."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from lg_deploy.metrics import Metrics
from lg_deploy.models import ExecutionStatus, LeaseRenewal
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.tasks import cancel_and_wait, wait_for_event

logger = logging.getLogger(__name__)

# Renew this many times per lease, so a few missed beats do not lose it.
RENEWALS_PER_LEASE = 4
# While something blocks the event loop, leases are renewed from another thread for at most this
# many lease periods; a loop stuck longer is taken for wedged, and its work for other workers.
STALLED_RENEWAL_LEASES = 10

# Renews {execution_id: attempt} for a worker, for `lease_seconds`, without the event loop.
BlockingRenewal = Callable[[str, dict[str, int], float], None]


class LeaseKeeper:
    """Every lease/4 seconds renews held leases; every recovery interval recovers expired ones.

    Recovered rows back in the queue `wake` the claimer.

    `held` is asked at each beat; `held_now`, the same without side effects, by `renew_stalled`
    from the watchdog thread, which renews through `blocking_renewal`.
    """

    def __init__(
        self,
        store: ExecutionStore,
        *,
        wake: Callable[[], None],
        worker_id: str,
        held: Callable[[], dict[str, int]],
        on_renewal: Callable[[LeaseRenewal, dict[str, int]], None],
        lease_seconds: float,
        recovery_interval_seconds: float,
        metrics: Metrics | None = None,
        blocking_renewal: BlockingRenewal | None = None,
        held_now: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self._store = store
        self._wake = wake
        self._worker_id = worker_id
        self._held = held
        self._on_renewal = on_renewal
        self._lease_seconds = lease_seconds
        self._beat_seconds = lease_seconds / RENEWALS_PER_LEASE
        self._recovery_interval_seconds = recovery_interval_seconds
        self._metrics = metrics
        self._blocking_renewal = blocking_renewal
        self._held_now = held_now or held
        self._renewed_at = time.monotonic()
        self._renewing_stalled = threading.Lock()
        self._gave_up = False
        self._renewed_for_stall = False
        self._now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing and recovering in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lg-deploy-leases")

    def beat_now(self) -> None:
        """Renew (and so learn of cancel requests) at once rather than at the next beat."""
        self._now.set()

    async def stop(self) -> None:
        """Stop renewing; leases still held then expire and are recovered by other workers."""
        await cancel_and_wait(self._task)
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
            await wait_for_event(self._now, wait)

    def renew_stalled(self, stalled_seconds: float) -> None:
        """From another thread, while the event loop has been stuck `stalled_seconds`: renew.

        Blocking code in an async node would otherwise lose every lease of this process, and
        other workers would run its executions again while they are still running here.
        """
        if self._blocking_renewal is None or not self._renewing_stalled.acquire(blocking=False):
            return
        try:
            if time.monotonic() - self._renewed_at < self._beat_seconds:
                return
            if stalled_seconds > STALLED_RENEWAL_LEASES * self._lease_seconds:
                if not self._gave_up:
                    self._gave_up = True
                    logger.error(
                        "event loop stuck for %.0f s: no longer renewing its leases; other"
                        " workers will take its executions over",
                        stalled_seconds,
                    )
                return
            self._gave_up = False
            try:
                held = self._held_now()
            except RuntimeError:  # the loop thread moved after all; try at the next tick
                return
            self._renewed_at = time.monotonic()
            if held:
                self._blocking_renewal(self._worker_id, held, self._lease_seconds)
                if not self._renewed_for_stall:
                    self._renewed_for_stall = True
                    logger.warning(
                        "event loop blocked: renewing its %d leases from the watchdog thread",
                        len(held),
                    )
        except Exception as error:
            logger.warning("lease renewal while the event loop is blocked failed: %s", error)
        finally:
            self._renewing_stalled.release()

    async def _renew(self) -> None:
        self._renewed_at = time.monotonic()
        self._renewed_for_stall = False
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
            if self._metrics is not None:
                self._metrics.lease_recoveries.labels(status.value).inc()
            logger.warning(
                "recovered execution %s with an expired lease: now %s", execution_id, status
            )
        if any(status == ExecutionStatus.QUEUED for _, status in recovered):
            self._wake()
