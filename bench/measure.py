"""The lg-deploy measurements: each returns {metric: value} for one repetition."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import db, procs
from bench.loadgen import Connection
from bench.server import Server

Result = dict[str, float]


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (`--quick` shrinks them all)."""

    drain: int = 20_000
    concurrency: int = 64  # slots per worker process for the no-op drain (best of 8-128)
    graph_only: int = 10_000
    pgbench: int = 20_000
    batch: int = 32
    pickup_seconds: float = 10.0
    pickup_rate: float = 100.0
    http_seconds: float = 5.0
    http_connections: int = 32
    depth_small: int = 10_000
    depth_big: int = 1_000_000
    depth_slice: int = 10_000
    sleep_concurrency: int = 1_000
    sleep_count: int = 5_000


# The smoke test's sizes (tests/test_bench_smoke.py): each step runs once, as small as still
# gives a number; the time goes into starting processes, not into the measurements.
QUICK = Sizes(
    drain=100,
    concurrency=16,
    graph_only=100,
    pgbench=128,
    pickup_seconds=0.5,
    http_seconds=0.5,
    http_connections=8,
    depth_small=100,
    depth_big=1_000,
    depth_slice=100,
    sleep_concurrency=20,
    sleep_count=40,
)


WORKER = ["-m", "lg_deploy", "worker"]


def drain(server: Server, sizes: Sizes, processes: int) -> Result:
    """Pre-queued no-op executions drained by `processes` workers, beside a graph-only loop."""
    # The loop runs just before and just after: the machine's speed drifts by tens of per
    # cent within minutes, so the drain is also given as a share of the loop beside it.
    before = graph_loop("noop", sizes.graph_only // 4)
    rate, _cpu = timed_drain(server, sizes.drain, sizes.concurrency, processes)
    beside = (before + graph_loop("noop", sizes.graph_only // 4)) / 2
    return {
        "executions/s": rate,
        "graph-only beside/s": beside,
        "% of graph-only beside": 100 * rate / beside,
    }


def timed_drain(
    server: Server,
    rows: int,
    slots: int,
    processes: int = 1,
    env: dict[str, str] | None = None,
    command: list[str] = WORKER,
    graph_id: str = "noop",
) -> tuple[float, float]:
    """(executions/s, the workers' CPU seconds) draining `rows` pre-queued executions."""
    url = server.create_database()
    try:
        db.queue_rows(url, rows, graph_id)
        worker_env = {**procs.lgd_env(url, worker_concurrency=slots), **(env or {})}
        workers = [procs.start(command, worker_env) for _ in range(processes)]
        try:
            db.wait_count(url, rows, workers)
            used = sum(procs.cpu_seconds(worker.pid) for worker in workers)
        finally:
            for worker in workers:
                procs.stop(worker)
        return db.drain_rate(url), used
    finally:
        server.drop_database(url)


GRAPH_LOOP = """
import asyncio, json, sys, time, uuid
from lg_deploy.graphs import GraphRegistry
from bench.graphs import SPECS

async def main(graph_id, count, loops):
    registry = GraphRegistry(SPECS)
    registry.load_all()
    for _ in range(min(200, count)):
        await registry.run(graph_id, {"n": 1}, thread_id=str(uuid.uuid4()))
    left = count

    async def loop():
        nonlocal left
        while left > 0:
            left -= 1
            await registry.run(graph_id, {"n": 1}, thread_id=str(uuid.uuid4()))

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(loops)))
    print(json.dumps(count / (time.perf_counter() - start)))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def graph_loop(graph_id: str, count: int, loops: int = 1) -> float:
    """Invocations/s of `graph_id` via GraphRegistry.run in `loops` concurrent loops, no queue."""
    done = subprocess.run(
        [sys.executable, "-c", GRAPH_LOOP, graph_id, str(count), str(loops)],
        cwd=procs.ROOT,
        env={**os.environ, "PYTHONPATH": str(procs.ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def graph_only(server: Server, sizes: Sizes) -> Result:
    """The no-op graph through GraphRegistry.run in one loop: no queue, no database."""
    return {"invocations/s": graph_loop("noop", sizes.graph_only)}


def graph_only_sleep(server: Server, sizes: Sizes) -> Result:
    """The 50 ms graph in as many concurrent loops as the worker has slots; no queue, no DB."""
    return {"invocations/s": graph_loop("sleep50", sizes.sleep_count, sizes.sleep_concurrency)}


CLAIM_ONE = (
    "WITH picked AS (SELECT execution_id FROM lg_deploy.executions"
    " WHERE status = 'QUEUED' AND run_at <= now() ORDER BY priority DESC, run_at, execution_id"
    " LIMIT {limit} FOR UPDATE SKIP LOCKED)"
    " UPDATE lg_deploy.executions e SET status = 'RUNNING', attempts = e.attempts + 1,"
    " worker_id = 'pgbench', lease_expires_at = now() + make_interval(secs => 10)"
    " FROM picked WHERE e.execution_id = picked.execution_id"
)
SINGLE_SCRIPT = (
    CLAIM_ONE.format(limit=1)
    + " RETURNING e.execution_id AS id, e.attempts AS att, e.input AS input \\gset\n"
    "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{}'::jsonb, error = NULL,"
    " worker_id = 'pgbench' WHERE execution_id = :id AND status = 'RUNNING'"
    " AND attempts = :att AND worker_id = 'pgbench' RETURNING *;\n"
)
BATCH_SCRIPT = (
    "WITH claimed AS ({claim} RETURNING e.*)"
    " SELECT array_agg(execution_id)::text AS ids FROM claimed \\gset\n"
    "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{{}}'::jsonb, error = NULL"
    " WHERE execution_id = ANY(:ids::uuid[]) AND status = 'RUNNING';\n"
)


def raw_sql(server: Server, sizes: Sizes, batch: int) -> Result:
    """pgbench running the worker's claim (returning the rows) + complete statements, 4 clients."""
    clients = 4
    per_client = max(1, sizes.pgbench // clients // batch)
    url = server.create_database()
    try:
        db.queue_rows(url, per_client * clients * batch + 100)
        script = (
            SINGLE_SCRIPT
            if batch == 1
            else BATCH_SCRIPT.format(claim=CLAIM_ONE.format(limit=batch))
        )
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
            handle.write(script)
        Path(handle.name).chmod(0o644)
        params = psycopg.conninfo.conninfo_to_dict(url)
        command = [
            str(server.bin_dir / "pgbench"),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-t",
            str(per_client),
            "-f",
            handle.name,
            "-h",
            str(params["host"]),
            "-U",
            str(params.get("user", "postgres")),
            str(params["dbname"]),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        Path(handle.name).unlink()
        found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
        if done.returncode or not found:
            raise RuntimeError(f"pgbench failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        unfinished = db.count(url, "status = 'RUNNING'")
        if unfinished:
            raise RuntimeError(f"pgbench left {unfinished} RUNNING")
        return {"executions/s": float(found[1]) * batch}
    finally:
        server.drop_database(url)


def _pace(rate: float, seconds: float) -> list[float]:
    start = time.monotonic() + 0.2
    return [start + i / rate for i in range(int(rate * seconds))]


def pickup_sql(server: Server, sizes: Sizes) -> Result:
    """Single-row INSERTs at a steady rate; insert (created_at) to RUNNING (started_at)."""
    url = server.create_database()
    try:
        env = procs.lgd_env(url, worker_concurrency=8)
        with procs.running(["-m", "lg_deploy", "worker"], env) as worker:
            with psycopg.connect(url, autocommit=True) as conn:  # warm-up: worker listening
                conn.execute(
                    "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('noop', '{}')"
                )
                db.wait_count(url, 1, [worker])
                conn.execute("DELETE FROM lg_deploy.executions")
                times = _pace(sizes.pickup_rate, sizes.pickup_seconds)
                for at in times:
                    time.sleep(max(0.0, at - time.monotonic()))
                    conn.execute(
                        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('noop', '{}')"
                    )
            db.wait_count(url, len(times), [worker])
        return {f"{k} ms": v for k, v in db.percentiles_ms(url, "started_at - created_at").items()}
    finally:
        server.drop_database(url)


def _serve(url: str, port: int, **settings: object) -> subprocess.Popen[bytes]:
    env = procs.lgd_env(url, host="127.0.0.1", port=port, **settings)
    child = procs.start(["-m", "lg_deploy", "serve"], env)
    procs.wait_http(child, f"http://127.0.0.1:{port}/readyz")
    return child


def pickup_http(server: Server, sizes: Sizes) -> Result:
    """POST /executions at a steady rate; client send to COMPLETED (finished_at), same clock."""
    url = server.create_database()
    try:
        port = procs.free_port()
        child = _serve(url, port, worker_concurrency=8)
        try:
            sent = asyncio.run(_paced_posts(port, sizes))
            db.wait_count(url, len(sent), [child])
        finally:
            procs.stop(child)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT execution_id::text, extract(epoch FROM finished_at)"
                " FROM lg_deploy.executions WHERE status = 'COMPLETED'"
            ).fetchall()
        waits = sorted((float(done) - sent[eid]) * 1000 for eid, done in rows if eid in sent)
        if len(waits) != len(sent):
            raise RuntimeError(f"{len(sent) - len(waits)} submitted executions did not complete")
        return {
            f"p{q} ms": waits[min(len(waits) - 1, int(len(waits) * q / 100))] for q in (50, 95, 99)
        }
    finally:
        server.drop_database(url)


async def _paced_posts(port: int, sizes: Sizes) -> dict[str, float]:
    conn = Connection(f"http://127.0.0.1:{port}/executions")
    body = json.dumps({"graph_id": "noop", "input": {"n": 1}}).encode()
    sent: dict[str, float] = {}
    try:
        await conn.post(body)  # warm-up
        for at in _pace(sizes.pickup_rate, sizes.pickup_seconds):
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            wall = time.time()
            status, answer = await conn.post(body)
            if status != 202:
                raise RuntimeError(f"POST answered {status}: {answer[:300]!r}")
            sent[json.loads(answer)["execution_id"]] = wall
    finally:
        await conn.close()
    return sent


def http_submit(server: Server, sizes: Sizes) -> Result:
    """POST /executions throughput: lg-deploy serve against the bare Starlette + INSERT app."""
    body = json.dumps({"graph_id": "noop", "input": {"n": 1}, "delay_seconds": 3600})
    result: Result = {}
    for name in ("lg-deploy", "bare"):
        url = server.create_database()
        try:
            port = procs.free_port()
            if name == "lg-deploy":
                child = _serve(url, port, worker_concurrency=1)
            else:
                env = {**os.environ, "BENCH_DATABASE_URL": url, "PYTHONPATH": str(procs.ROOT)}
                child = procs.start(
                    [
                        "-m",
                        "uvicorn",
                        "bench.bare_app:app",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    env,
                )
                procs.wait_http(child, f"http://127.0.0.1:{port}/readyz")
            try:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.loadgen",
                        f"http://127.0.0.1:{port}/executions",
                        body,
                        str(sizes.http_connections),
                        str(sizes.http_seconds),
                    ],
                    cwd=procs.ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            finally:
                procs.stop(child)
            load = json.loads(done.stdout)
            if load["errors"]:
                raise RuntimeError(f"{name}: {load['errors']} error answers")
            result[f"{name} requests/s"] = load["requests"] / load["seconds"]
        finally:
            server.drop_database(url)
    result["ratio %"] = 100 * result["lg-deploy requests/s"] / result["bare requests/s"]
    return result


class DeepQueue:
    """One database holding `depth_big` queued rows; each repetition drains the next slice."""

    def __init__(self, server: Server, sizes: Sizes) -> None:
        self.server, self.sizes = server, sizes
        self.url = server.create_database()
        started = time.monotonic()
        db.queue_rows(self.url, sizes.depth_big)
        self.insert_seconds = time.monotonic() - started
        self.taken = 0

    def drain_slice(self) -> float:
        """Run a worker until `depth_slice` more completed; that slice's rate."""
        env = procs.lgd_env(self.url, worker_concurrency=self.sizes.concurrency)
        mark = time.time()
        with procs.running(["-m", "lg_deploy", "worker"], env) as worker:
            self.taken += self.sizes.depth_slice
            db.wait_count(self.url, self.taken, [worker], where="status = 'COMPLETED'")
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
                " FROM lg_deploy.executions"
                " WHERE status = 'COMPLETED' AND started_at >= to_timestamp(%s)",
                (mark,),
            ).fetchone()
            back = conn.execute(
                "SELECT count(*) FROM lg_deploy.executions WHERE status <> 'COMPLETED'"
            ).fetchone()
        assert row is not None
        assert back is not None
        self.taken = self.sizes.depth_big - int(back[0])
        return int(row[0]) / float(row[1])

    def close(self) -> None:
        """Drop the database."""
        self.server.drop_database(self.url)


def depth(server: Server, sizes: Sizes, deep: DeepQueue) -> Result:
    """Drain rate of a slice of a deep queue against a shallow queue of the slice's size."""
    small = drain(server, Sizes(**{**sizes.__dict__, "drain": sizes.depth_small}), 1)
    big = deep.drain_slice()
    shallow = small["executions/s"]
    return {
        "shallow executions/s": shallow,
        "deep executions/s": big,
        "ratio %": 100 * big / shallow,
    }


def concurrency(server: Server, sizes: Sizes) -> Result:
    """The 50 ms graph at many slots in one worker process: throughput and peak RSS."""
    url = server.create_database()
    try:
        db.queue_rows(url, sizes.sleep_count, graph_id="sleep50")
        env = procs.lgd_env(url, worker_concurrency=sizes.sleep_concurrency)
        with procs.running(["-m", "lg_deploy", "worker"], env) as worker:
            db.wait_count(url, sizes.sleep_count, [worker])
            rss = procs.peak_rss_mb(worker.pid)
        rate = db.drain_rate(url)
        ideal = sizes.sleep_concurrency / 0.05
        return {"executions/s": rate, "% of slots/50ms": 100 * rate / ideal, "peak RSS MB": rss}
    finally:
        server.drop_database(url)
