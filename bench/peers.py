"""Peer queues draining the same jobs: each job's task invokes the same no-op graph.

Each peer runs in a child process (`python -m bench.peers NAME URL COUNT CONCURRENCY`) that
installs its schema, queues COUNT jobs, then drains them with one worker; the rate comes from
the peer's own event tables (database clock), first start to last success, like lg-deploy's.
The packages are optional: `scripts/bench` installs them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import psycopg

from bench import procs
from bench.measure import Result, Sizes
from bench.server import Server


def _registry():  # type: ignore[no-untyped-def]
    from bench.graphs import SPECS
    from lg_deploy.graphs import GraphRegistry

    registry = GraphRegistry(SPECS)
    registry.load_all()
    return registry


async def run_procrastinate(url: str, count: int, concurrency: int) -> None:
    """Queue and drain `count` procrastinate jobs."""
    import procrastinate

    registry = _registry()
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="run_graph")
    async def run_graph(n: int) -> None:
        await registry.run("noop", {"n": n})

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, count, 5000):
            await run_graph.batch_defer_async(
                *({"n": i} for i in range(start, min(count, start + 5000)))
            )
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )


async def run_pgqueuer(url: str, count: int, concurrency: int) -> None:
    """Queue and drain `count` pgqueuer jobs."""
    from pgqueuer import PgQueuer, PsycopgDriver, Queries
    from pgqueuer.types import QueueExecutionMode

    registry = _registry()
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        driver = PsycopgDriver(conn)
        queries = Queries(driver)
        await queries.install()
        for start in range(0, count, 5000):
            size = min(count, start + 5000) - start
            await queries.enqueue(["run_graph"] * size, [b"{}"] * size, [0] * size)
        pgq = PgQueuer(driver)

        @pgq.entrypoint("run_graph")
        async def run_graph(job: object) -> None:
            await registry.run("noop", {"n": 1})

        await pgq.run(batch_size=concurrency, mode=QueueExecutionMode.drain)
    finally:
        await conn.close()


RATE_SQL = {
    "procrastinate": (
        "SELECT count(*) FILTER (WHERE type = 'succeeded'),"
        " extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')"
        " - min(at) FILTER (WHERE type = 'started')),"
        " count(*) FILTER (WHERE type = 'failed') FROM procrastinate_events"
    ),
    "pgqueuer": (
        "SELECT count(*) FILTER (WHERE status = 'successful'),"
        " extract(epoch FROM max(created) FILTER (WHERE status = 'successful')"
        " - min(created) FILTER (WHERE status = 'picked')),"
        " count(*) FILTER (WHERE status = 'exception') FROM pgqueuer_log"
    ),
}


def _peer(name: str) -> Callable[[Server, Sizes], Result]:
    def run(server: Server, sizes: Sizes) -> Result:
        url = server.create_database(f"peer_{name}")
        try:
            command = [
                sys.executable,
                "-m",
                "bench.peers",
                name,
                url,
                str(sizes.drain),
                str(sizes.concurrency),
            ]
            subprocess.run(command, cwd=procs.ROOT, check=True, capture_output=True, timeout=900)
            with psycopg.connect(url) as conn:
                row = conn.execute(RATE_SQL[name]).fetchone()
            assert row is not None
            done, seconds, failed = int(row[0]), float(row[1] or 0), int(row[2])
            if done != sizes.drain or failed:
                raise RuntimeError(f"{name}: {done} succeeded, {failed} failed of {sizes.drain}")
            return {"executions/s": done / seconds}
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"{name} failed: {error.stderr.decode()[-1500:]}") from None
        finally:
            server.drop_database(url)

    return run


PEERS = {"procrastinate": _peer("procrastinate"), "pgqueuer": _peer("pgqueuer")}


def main() -> None:
    """Child entry: NAME URL COUNT CONCURRENCY."""
    name, url, count, concurrency = sys.argv[1:5]
    runner = run_procrastinate if name == "procrastinate" else run_pgqueuer
    asyncio.run(runner(url, int(count), int(concurrency)))


if __name__ == "__main__":
    main()
