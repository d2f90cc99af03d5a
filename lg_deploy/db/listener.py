"""The process's one LISTEN connection: dedicated, autocommit, re-LISTENs after any reconnect."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from lg_deploy.tasks import cancel_and_wait, wait_for_event

logger = logging.getLogger(__name__)

QUEUED_CHANNEL = "lg_deploy_queued"
FINISHED_CHANNEL = "lg_deploy_finished"
CANCEL_CHANNEL = "lg_deploy_cancel"
EVENTS_CHANNEL = "lg_deploy_events"  # a run's stream events were recorded (lg_deploy.streams)
WEBHOOKS_CHANNEL = "lg_deploy_webhooks"  # webhook deliveries were queued (lg_deploy.webhooks)
CHANNELS = (QUEUED_CHANNEL, FINISHED_CHANNEL, CANCEL_CHANNEL, EVENTS_CHANNEL, WEBHOOKS_CHANNEL)
# Delivered to every subscriber after a (re)connect: notifications may have been missed.
RECONNECTED = "*"

PING_INTERVAL_SECONDS = 5.0
RECONNECT_DELAY_SECONDS = (0.1, 5.0)
LISTENER_APPLICATION_NAME = "lg-deploy-listener"

Callback = Callable[[str], None]


class Listener:
    """Dispatches NOTIFY payloads to subscribers; a dropped connection is re-made, re-LISTENed."""

    def __init__(
        self,
        conninfo: str,
        channels: Iterable[str] = CHANNELS,
        *,
        ping_interval_seconds: float = PING_INTERVAL_SECONDS,
    ) -> None:
        self._conninfo = conninfo
        self._channels = tuple(channels)
        self._ping_interval_seconds = ping_interval_seconds
        self._subscribers: defaultdict[str, list[Callback]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.connects = 0

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels this listener LISTENs on."""
        return self._channels

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._connected.is_set()

    def subscribe(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call `callback(payload)` for each notification on `channel`; returns an unsubscribe."""
        if channel not in self._channels:
            raise ValueError(f"not listening on {channel!r}")
        self._subscribers[channel].append(callback)
        return lambda: self._subscribers[channel].remove(callback)

    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Start listening; waits up to `wait_seconds` for the first connection, then goes on."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lg-deploy-listener")
        await wait_for_event(self._connected, wait_seconds)
        if not self.connected:
            logger.warning("LISTEN connection not up yet; workers poll meanwhile")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        shortest, longest = RECONNECT_DELAY_SECONDS
        delay = shortest
        while True:
            connects_before = self.connects
            try:
                await self._listen_until_broken()
            except (psycopg.Error, OSError) as error:
                if self.connects > connects_before:
                    delay = shortest
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1f s", error, delay)
            finally:
                self._connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _listen_until_broken(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=LISTENER_APPLICATION_NAME
        )
        async with conn:
            for channel in self._channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.connects += 1
            self._connected.set()
            logger.info("listening on %s", ", ".join(self._channels))
            for channel in self._channels:
                self._dispatch(channel, RECONNECTED)
            while True:
                async for notify in conn.notifies(timeout=self._ping_interval_seconds):
                    self._dispatch(notify.channel, notify.payload)
                await conn.execute("SELECT 1")

    def _dispatch(self, channel: str, payload: str) -> None:
        for callback in list(self._subscribers.get(channel, ())):
            try:
                callback(payload)
            except Exception:
                logger.exception("notification callback failed on %s", channel)
