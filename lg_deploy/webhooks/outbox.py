"""The webhook outbox in PostgreSQL: the default URL, claims with leases, recorded tries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.queries import query
from lg_deploy.webhooks.models import WebhookDelivery

RECOVER_BATCH = 100


@dataclass(frozen=True)
class Claim:
    """One try of a delivery this sender holds until its lease passes."""

    delivery_id: str
    execution_id: str
    url: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class Outcome:
    """What one try got: an HTTP status, or an error; `give_up` ends the delivery failed."""

    status_code: int | None = None
    error: str | None = None
    give_up: bool = False
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        """True for a 2xx answer."""
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class Outbox:
    """lg_deploy.webhook_deliveries and webhook_attempts, as one sender (`worker_id`) uses them."""

    def __init__(self, pool: AsyncConnectionPool[Any], worker_id: str) -> None:
        self._pool = pool
        self._worker_id = worker_id

    async def set_default(self, url: str | None) -> None:
        """Make `url` the deployment's default webhook (None: no default)."""
        async with self._pool.connection() as conn:
            params = {"url": url, "worker_id": self._worker_id}
            await conn.execute(query("set_webhook_default"), params)

    async def default(self) -> str | None:
        """The deployment's default webhook, if any."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(query("get_webhook_default"))).fetchone()
        return None if row is None else row[0]

    async def recover_expired(self) -> int:
        """Hand back deliveries whose sender's lease passed; how many."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query("recover_webhook_leases"), {"limit": RECOVER_BATCH})
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def claim(self, limit: int, *, lease_seconds: float, max_attempts: int) -> list[Claim]:
        """Up to `limit` due deliveries, each one try counted and leased to this sender."""
        params = {
            "limit": limit,
            "worker_id": self._worker_id,
            "lease_seconds": lease_seconds,
            "max_attempts": max_attempts,
        }
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(query("claim_webhook_deliveries"), params)).fetchall()
        return [Claim(*row) for row in rows]

    async def record(self, claim: Claim, outcome: Outcome, retry_in_seconds: float) -> str | None:
        """Write the try's outcome; the delivery's new status, or None when this sender no
        longer held the try (its lease passed; the try was recorded as lost)."""
        params = {
            "delivery_id": claim.delivery_id,
            "worker_id": self._worker_id,
            "attempt": claim.attempt,
            "delivered": outcome.delivered,
            "give_up": outcome.give_up,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "retry_in_seconds": retry_in_seconds,
            "duration_ms": outcome.duration_ms,
        }
        async with self._pool.connection() as conn:
            row = await (await conn.execute(query("record_webhook_attempt"), params)).fetchone()
        return None if row is None else str(row[0])

    async def deliveries(self, execution_id: str) -> list[WebhookDelivery]:
        """The execution's deliveries with their tries."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("list_webhook_deliveries"), {"execution_id": execution_id})
            rows = await cur.fetchall()
        return [WebhookDelivery.model_validate(row) for row in rows]
