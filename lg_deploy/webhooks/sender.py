"""The webhook sender: a loop beside the graph slots that POSTs due deliveries, signed.

It claims due deliveries (each try counted and leased), at most `concurrency` in flight, and
sends each on a task of its own, bounded by a total timeout: a receiver that hangs holds one of
these, never a graph slot. Every try is recorded; a failed one is due again after a back-off
(doubling, capped, the second half random), until the delivery runs out of attempts. A NOTIFY
from the outbox trigger wakes it at once; it also polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lg_deploy.models import ExecutionState, utcnow
from lg_deploy.tasks import cancel_and_wait, wait_for_event
from lg_deploy.webhooks.allowlist import AllowList, WebhookRefused
from lg_deploy.webhooks.outbox import Claim, Outbox, Outcome
from lg_deploy.webhooks.payload import payload_of
from lg_deploy.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EXECUTION_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from lg_deploy.webhooks.transport import HttpPoster, resolve

logger = logging.getLogger(__name__)

RECORD_TRIES = 3
RECORD_RETRY_SECONDS = 1.0
STOP_RECORD_SECONDS = 2.0

LoadExecution = Callable[[str], Awaitable[ExecutionState | None]]


@dataclass(frozen=True)
class SenderConfig:
    """How one process sends webhooks (from the LG_DEPLOY_WEBHOOK_* settings)."""

    allow: AllowList
    secret: str | None
    timeout_seconds: float
    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float
    concurrency: int
    poll_interval_seconds: float
    lease_seconds: float  # a try's claim: the timeout plus a margin to record its outcome


def retry_delay(
    attempt: int, base_seconds: float, max_seconds: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the try after `attempt`: base x 2^(attempt-1), capped, half of it random."""
    delay: float = min(max_seconds, base_seconds * 2.0 ** min(attempt - 1, 30))
    return delay / 2 + rand() * delay / 2


class WebhookSender:
    """Sends the outbox's due deliveries, at most `config.concurrency` at once."""

    def __init__(
        self,
        outbox: Outbox,
        load: LoadExecution,
        config: SenderConfig,
        *,
        worker_id: str,
        poster: HttpPoster | None = None,
    ) -> None:
        self._outbox = outbox
        self._load = load
        self._config = config
        self._worker_id = worker_id
        self._poster = poster or HttpPoster(config.timeout_seconds)
        # Lookups of its own: a DNS server that hangs fills these threads, not the loop's.
        self._dns = ThreadPoolExecutor(
            max_workers=max(1, config.concurrency), thread_name_prefix="lg-deploy-webhook-dns"
        )
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._warned_unsigned = False

    def wake(self) -> None:
        """Look for due deliveries now (a NOTIFY came, or a try ended)."""
        self._wake.set()

    async def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="lg-deploy-webhooks")

    async def stop(self) -> None:
        """Stop: tries in flight are cut and recorded as interrupted, due again at once."""
        await cancel_and_wait(self._task)
        tries = list(self._in_flight.values())
        for task in tries:
            task.cancel()
        await asyncio.gather(*tries, return_exceptions=True)
        await self._poster.aclose()
        self._dns.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self._fill()
            await wait_for_event(self._wake, self._config.poll_interval_seconds)

    async def _fill(self) -> None:
        """Claim as many due deliveries as there are free places, and start their tries."""
        free = self._config.concurrency - len(self._in_flight)
        if free <= 0:
            return
        try:
            await self._outbox.recover_expired()
            claims = await self._outbox.claim(
                free,
                lease_seconds=self._config.lease_seconds,
                max_attempts=self._config.max_attempts,
            )
        except Exception as error:
            logger.warning("claiming webhook deliveries failed (%s); will retry", error)
            return
        for claim in claims:
            task = asyncio.create_task(self._try(claim), name=f"webhook-{claim.delivery_id}")
            self._in_flight[claim.delivery_id] = task
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        """A try ended: its place is free, so look for more."""
        self._in_flight = {key: held for key, held in self._in_flight.items() if held is not task}
        self.wake()

    async def _try(self, claim: Claim) -> None:
        """One try of `claim`: send, then record its outcome (interrupted when stopped)."""
        started = time.monotonic()
        try:
            outcome = await self._send(claim, started)
        except asyncio.CancelledError:
            stopped = Outcome(
                error=f"interrupted: sender {self._worker_id} stopped", duration_ms=_ms(started)
            )
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_RECORD_SECONDS):
                    await self._outbox.record(claim, stopped, 0.0)
            raise
        await self._record(claim, outcome)

    async def _send(self, claim: Claim, started: float) -> Outcome:
        """POST the execution's body; the outcome, never an exception but a cancel."""
        config = self._config
        try:
            async with asyncio.timeout(config.timeout_seconds):
                status = await self._post(claim)
        except WebhookRefused as refused:
            return Outcome(error=f"refused: {refused}", give_up=True, duration_ms=_ms(started))
        except TimeoutError:
            error = f"timed out after {config.timeout_seconds:g} s"
            return Outcome(error=error, duration_ms=_ms(started))
        except Exception as error:
            return Outcome(error=_describe(error), duration_ms=_ms(started))
        return Outcome(status_code=status, error=_status_error(status), duration_ms=_ms(started))

    async def _post(self, claim: Claim) -> int:
        state = await self._load(claim.execution_id)
        if state is None:  # deliveries go with their execution: only a race with its delete
            raise WebhookRefused(f"execution {claim.execution_id} no longer exists")
        target, address = await resolve(self._config.allow, claim.url, self._dns)
        body = payload_of(state, utcnow())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: claim.delivery_id,
            ATTEMPT_HEADER: str(claim.attempt),
            EXECUTION_HEADER: claim.execution_id,
        }
        if self._config.secret:
            headers[SIGNATURE_HEADER] = signature_header(self._config.secret, body)
        elif not self._warned_unsigned:
            self._warned_unsigned = True
            logger.warning("LG_DEPLOY_WEBHOOK_SECRET is not set: webhooks are sent unsigned")
        return await self._poster.post(target, address, headers, body)

    async def _record(self, claim: Claim, outcome: Outcome) -> None:
        """Record the outcome, retrying a failing database; a try left unrecorded is recovered
        as lost when its lease passes, and sent again (at least once)."""
        config = self._config
        retry_in = retry_delay(claim.attempt, config.backoff_seconds, config.backoff_max_seconds)
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                status = await self._outbox.record(claim, outcome, retry_in)
            except Exception as error:
                if attempt == RECORD_TRIES:
                    logger.warning("recording webhook %s failed (%s)", claim.delivery_id, error)
                    return
                await asyncio.sleep(RECORD_RETRY_SECONDS)
                continue
            _log_outcome(claim, outcome, status)
            return


def _log_outcome(claim: Claim, outcome: Outcome, status: str | None) -> None:
    where = f"webhook delivery {claim.delivery_id} (execution {claim.execution_id})"
    if status is None:
        logger.info("%s: attempt %d outcome not recorded, its lease passed", where, claim.attempt)
    elif status == "delivered":
        logger.info("%s delivered on attempt %d", where, claim.attempt)
    elif status == "failed":
        logger.warning("%s failed on attempt %d: %s", where, claim.attempt, outcome.error)
    else:
        logger.info("%s attempt %d failed (%s); will retry", where, claim.attempt, outcome.error)


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status} (redirects are not followed)"
    return f"HTTP {status}"


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
