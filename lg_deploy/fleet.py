"""The fleet: each worker process's row in lg_deploy.workers, and the graphs nobody serves.

A process registers the graphs it serves when it starts, keeps its row alive while it runs and
removes it when it stops, so psql, /graphs and /metrics can tell which QUEUED executions wait
for a graph that no live worker serves. Claims never need it: they filter on their own graphs.

A row also names the process table its pid lives in (`host_key`: the kernel's boot id and the
pid namespace). A process sharing that table sees for certain when another worker's process is
gone (no such pid, or a zombie), at its start and at each heartbeat, and puts that worker's runs
back in the queue at once instead of waiting out their leases: a server restarted after a crash
picks its own runs up again in seconds. Any doubt (another host, another namespace, a reused
pid) leaves the runs to their leases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.pool import while_unreachable
from lg_deploy.db.queries import query
from lg_deploy.models import UnservedGraph
from lg_deploy.tasks import cancel_and_wait

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE_PATH = Path("/proc/self/ns/pid")

logger = logging.getLogger(__name__)

# A worker's row is renewed this many times per time-to-live, so a missed beat loses nothing.
HEARTBEATS_PER_TTL = 3
# Rows of workers that died stay visible this long after they expired, then go.
DEAD_WORKER_KEEP_SECONDS = 3600.0
# Executions of never-served graphs failed per statement (LG_DEPLOY_UNSERVED_GRAPH_SECONDS).
FAIL_BATCH = 500


class Fleet:
    """This process's registration: its graphs, alive for `ttl_seconds` past each heartbeat.

    It also fails QUEUED executions that have been due `fail_never_served_after_seconds` for a
    graph no worker has ever served (never those of a graph some worker served before).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        worker_id: str,
        graph_ids: Collection[str],
        concurrency: int,
        ttl_seconds: float,
        fail_never_served_after_seconds: float,
        recover_gone_workers: bool = True,
    ) -> None:
        self._pool = pool
        self.worker_id = worker_id
        self.graph_ids = sorted(set(graph_ids))
        self._concurrency = concurrency
        self._ttl_seconds = ttl_seconds
        self._fail_after_seconds = fail_never_served_after_seconds
        self._task: asyncio.Task[None] | None = None
        self._recover_gone = recover_gone_workers

    async def start(self) -> None:
        """Register this process and its graphs (waiting out a database that is restarting),
        then keep the registration alive."""
        await while_unreachable(self._register, "fleet registration")
        logger.info("serving graphs %s as worker %s", ", ".join(self.graph_ids), self.worker_id)
        try:
            await self.recover_gone()
        except Exception as error:  # the next heartbeat tries again; leases recover them anyway
            logger.warning("could not recover the runs of workers that are gone: %s", error)
        self._task = asyncio.create_task(self._run(), name="lg-deploy-fleet")

    async def stop(self) -> None:
        """Stop the heartbeat and remove this process's row."""
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self._execute(query("deregister_worker"), {"worker_id": self.worker_id})
        except Exception as error:  # it expires by itself
            logger.warning("could not remove worker %s from the fleet: %s", self.worker_id, error)

    async def unserved(self) -> list[UnservedGraph]:
        """Graphs with QUEUED executions that no live worker serves, with their longest wait."""
        return await unserved_graphs(self._pool)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_seconds / HEARTBEATS_PER_TTL)
            try:
                await self._beat()
            except Exception as error:
                logger.warning("fleet heartbeat failed (%s); will retry", error)

    async def _beat(self) -> None:
        params = {"worker_id": self.worker_id, "ttl_seconds": self._ttl_seconds}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query("heartbeat_worker"), params)
            alive = await cursor.fetchone() is not None
            await conn.execute(
                query("forget_dead_workers"), {"keep_seconds": DEAD_WORKER_KEEP_SECONDS}
            )
        if not alive:
            logger.warning("worker %s missing from the fleet; registering it again", self.worker_id)
            await self._register()
        await self.recover_gone()
        await self._fail_never_served(self._fail_after_seconds)

    async def recover_gone(self) -> list[tuple[str, str]]:
        """Requeue (or fail, without attempts left) the runs of workers whose processes are gone
        from this process table; (execution id, new status) of each."""
        key = host_key()
        if key is None or not self._recover_gone:
            return []
        params = {"host_key": key, "worker_id": self.worker_id}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query("workers_sharing_host_key"), params)
            gone = [str(worker_id) for worker_id, pid in await cursor.fetchall() if is_gone(pid)]
            if not gone:
                return []
            cursor = await conn.execute(query("recover_gone_workers"), {"worker_ids": gone})
            recovered = [(str(eid), str(status)) for eid, status in await cursor.fetchall()]
        for execution_id, status in recovered:
            logger.warning(
                "execution %s is %s again: its worker's process is gone", execution_id, status
            )
        return recovered

    async def _register(self) -> None:
        params = {
            "worker_id": self.worker_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "graph_ids": self.graph_ids,
            "concurrency": self._concurrency,
            "ttl_seconds": self._ttl_seconds,
            "host_key": host_key(),
        }
        await self._execute(query("register_worker"), params)

    async def _fail_never_served(self, after_seconds: float) -> None:
        params = {"after_seconds": after_seconds, "limit": FAIL_BATCH}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query("fail_never_served"), params)
            failed = await cursor.fetchall()
        for execution_id, graph_id in failed:
            logger.warning(
                "execution %s failed: no worker has ever served graph %r", execution_id, graph_id
            )

    async def _execute(self, sql: LiteralString, params: dict[str, Any]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(sql, params)


def host_key() -> str | None:
    """This process table's identity: the kernel's boot id and the pid namespace; None where
    /proc does not tell (then no worker is ever judged gone by its pid)."""
    try:
        boot_id = BOOT_ID_PATH.read_text().strip()
        namespace = PID_NAMESPACE_PATH.stat().st_ino
    except OSError:
        return None
    return f"{boot_id}/{namespace}" if boot_id else None


def is_gone(pid: int) -> bool:
    """Whether no process `pid` can still run here: none exists, or only its zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


async def unserved_graphs(pool: AsyncConnectionPool[Any]) -> list[UnservedGraph]:
    """Rows of the lg_deploy.unserved_graphs view, by graph."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("list_unserved_graphs"))
        rows = await cur.fetchall()
    return [UnservedGraph.model_validate(row) for row in rows]
