"""What one chaos run does: the sizes, the faults, the workers' settings (ChaosPlan)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

LG_DEPLOY_WORKER = (sys.executable, "-m", "lg_deploy", "worker")
BROKEN_WORKER = (sys.executable, "-m", "tests.chaos.broken")
CHAOS_GRAPHS = {
    "sleep": "lg_deploy.examples.sleep:graph",
    "turns": "tests.chaos.graph:graph",  # the thread runs' graph
    "ticks": "tests.chaos.graph:ticks",  # the thread-less runs that stream
}
THREAD_STREAM_MODES = ("values", "updates")  # of the thread runs that stream
TICKS_STREAM_MODES = ("values", "updates", "custom")
STREAM_KEEPALIVE_SECONDS = 1.0  # the serve processes' heartbeats


@dataclass(frozen=True)
class ChaosPlan:
    """What one chaos run does; the defaults are the CI sizes (N=500 of which R=60 on T=12
    threads, K=5, M=2, J=5, P=3; S=20 runs streamed, each followed by 2 clients through 2 serve
    processes, A=2 of which are SIGKILLed)."""

    seed: int
    executions: int = 500  # N in all, each with seeded seconds in [min, max]
    thread_runs: int = 60  # R of the N run the `turns` graph on threads; the rest `sleep`
    threads: int = 12  # T threads, R/T runs each, at seeded places among the N
    kills: int = 5  # K worker SIGKILLs, each followed by a fresh worker process
    restarts: int = 2  # M `pg_ctl restart -m immediate`
    terminations: int = 5  # J rounds of pg_terminate_backend on every lg-deploy backend
    pauses: int = 3  # P SIGSTOPs of a worker holding executions, SIGCONT after pause_seconds
    workers: int = 3
    concurrency: int = 8
    lease_seconds: float = 3.0
    recovery_interval_seconds: float = 0.5
    poll_interval_seconds: float = 0.5
    pause_seconds: float = 4.5  # longer than the lease: the paused worker's leases expire
    min_sleep_seconds: float = 0.0
    max_sleep_seconds: float = 0.3
    fault_window_seconds: float = 15.0  # faults and submissions happen within this window
    submit_batches: int = 25  # N is inserted in this many plain SQL INSERT statements
    max_attempts: int = 20
    retry_backoff_seconds: float = 0.5  # before retrying a run that lost its connection
    settle_seconds: float = 60.0  # all must be terminal this long after the last fault
    worker_command: tuple[str, ...] = LG_DEPLOY_WORKER
    # S of the N record their stream (stream_mode set in the INSERT): up to half of them runs
    # on threads, the rest `ticks` runs in place of `sleep` ones, of seeded seconds in
    # [min_stream, max_stream]; each is followed by `clients_per_run` streaming clients.
    streamed_runs: int = 20
    clients_per_run: int = 2
    servers: int = 2  # `lg-deploy serve` processes (LG_DEPLOY_RUN_GRAPHS=false) they stream from
    api_kills: int = 2  # A SIGKILLs of a serve process, each followed by a fresh one
    ticks: int = 6  # steps of each `ticks` run
    min_stream_seconds: float = 1.0
    max_stream_seconds: float = 2.5
    stream_end_seconds: float = 30.0  # every client must end this long after all are final

    def __post_init__(self) -> None:
        if not 0 <= self.thread_runs <= self.executions:
            raise ValueError("thread_runs must be between 0 and executions")
        if self.thread_runs and not self.threads:
            raise ValueError("thread runs need threads")
        if not 0 <= self.streamed_runs <= self.executions:
            raise ValueError("streamed_runs must be between 0 and executions")
        if self.streamed_runs - self.streamed_thread_runs > self.executions - self.thread_runs:
            raise ValueError("too few thread-less executions for the streamed runs")
        if (self.streamed_runs or self.api_kills) and self.servers < 1:
            raise ValueError("streamed runs and serve kills need serve processes")

    @property
    def streamed_thread_runs(self) -> int:
        """How many of the streamed runs are thread runs: half, as far as there are some."""
        return min(self.thread_runs, self.streamed_runs // 2)

    def worker_env(self, url: str) -> dict[str, str]:
        """Environment of each worker process (documented values of the run)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LG_DEPLOY_")}
        env.update(
            LG_DEPLOY_DATABASE_URL=url,
            LG_DEPLOY_MIGRATE_ON_START="false",  # the harness migrated; PG may be restarting
            LG_DEPLOY_GRAPHS=json.dumps(CHAOS_GRAPHS),
            # A run on a thread whose checkpoint write meets a dropped connection raises in its
            # graph; a lost connection is retried by default (docs/guarantees.md).
            LG_DEPLOY_RETRY_BACKOFF_SECONDS=str(self.retry_backoff_seconds),
            LG_DEPLOY_WORKER_CONCURRENCY=str(self.concurrency),
            LG_DEPLOY_LEASE_SECONDS=str(self.lease_seconds),
            LG_DEPLOY_RECOVERY_INTERVAL_SECONDS=str(self.recovery_interval_seconds),
            LG_DEPLOY_POLL_INTERVAL_SECONDS=str(self.poll_interval_seconds),
            LG_DEPLOY_LOG_LEVEL="WARNING",
            LG_DEPLOY_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        return env

    def serve_env(self, url: str) -> dict[str, str]:
        """Environment of each serve process: the workers', running no graph."""
        return {
            **self.worker_env(url),
            "LG_DEPLOY_RUN_GRAPHS": "false",
            "LG_DEPLOY_KEEPALIVE_SECONDS": str(STREAM_KEEPALIVE_SECONDS),
        }


def negative_control_plan(seed: int) -> ChaosPlan:
    """Broken workers (tests/chaos/broken.py), pauses only, graphs longer than the lease.

    Runs of 2.5-3.5 s mean the new attempt of an execution a paused worker held is still
    RUNNING when that worker wakes up, so its unfenced outcome lands on the later attempt.
    """
    return ChaosPlan(
        seed=seed,
        executions=100,
        thread_runs=0,
        threads=0,
        kills=0,
        restarts=0,
        terminations=0,
        pauses=3,
        concurrency=16,
        min_sleep_seconds=2.5,
        max_sleep_seconds=3.5,
        fault_window_seconds=12.0,
        submit_batches=6,
        worker_command=BROKEN_WORKER,
        streamed_runs=0,
        servers=0,
        api_kills=0,
    )
