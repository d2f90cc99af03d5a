"""Webhooks in a process: the default URL written at start, the sender running beside the worker."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.listener import WEBHOOKS_CHANNEL, Listener
from lg_deploy.settings import Settings
from lg_deploy.webhooks.allowlist import AllowList
from lg_deploy.webhooks.outbox import Outbox
from lg_deploy.webhooks.sender import LoadExecution, SenderConfig, WebhookSender

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Webhooks:
    """What the API needs of webhooks: the allow-list, and the outbox to read deliveries."""

    allow: AllowList
    outbox: Outbox


def sender_config(settings: Settings, allow: AllowList) -> SenderConfig:
    """The sender's configuration from the LG_DEPLOY_WEBHOOK_* settings."""
    return SenderConfig(
        allow=allow,
        secret=settings.webhook_secret,
        timeout_seconds=settings.webhook_timeout_seconds,
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        backoff_max_seconds=settings.webhook_backoff_max_seconds,
        concurrency=settings.webhook_concurrency,
        poll_interval_seconds=settings.poll_interval_seconds,
        lease_seconds=settings.webhook_timeout_seconds + settings.lease_seconds,
    )


@contextlib.asynccontextmanager
async def open_webhooks(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    *,
    worker_id: str,
    load: LoadExecution,
    listener: Listener | None,
) -> AsyncIterator[Webhooks]:
    """Write LG_DEPLOY_WEBHOOK_URL as the default (when given), and while the block runs send
    deliveries, in a process that runs graphs (LG_DEPLOY_WEBHOOK_CONCURRENCY=0: none)."""
    allow = AllowList.parse(settings.webhook_allowed_hosts)
    outbox = Outbox(pool, worker_id)
    await _apply_default(outbox, settings)
    if not settings.run_graphs or settings.webhook_concurrency == 0:
        yield Webhooks(allow, outbox)
        return
    sender = WebhookSender(outbox, load, sender_config(settings, allow), worker_id=worker_id)
    unsubscribe = None
    if listener is not None and WEBHOOKS_CHANNEL in listener.channels:
        unsubscribe = listener.subscribe(WEBHOOKS_CHANNEL, lambda _payload: sender.wake())
    await sender.start()
    try:
        yield Webhooks(allow, outbox)
    finally:
        if unsubscribe is not None:
            unsubscribe()
        await sender.stop()


async def _apply_default(outbox: Outbox, settings: Settings) -> None:
    """LG_DEPLOY_WEBHOOK_URL given: it becomes the default (empty: none); not given: the
    database's stays. Either way the log says which is in force."""
    if settings.webhook_url is not None:
        url = settings.webhook_url or None
        await outbox.set_default(url)
        logger.info("default webhook: %s (LG_DEPLOY_WEBHOOK_URL)", url or "none")
    else:
        url = await outbox.default()
        if url is not None:
            logger.info("default webhook: %s (lg_deploy.webhook_defaults)", url)
    if url is not None and not settings.webhook_secret:
        logger.warning("LG_DEPLOY_WEBHOOK_SECRET is not set: webhooks are sent unsigned")
