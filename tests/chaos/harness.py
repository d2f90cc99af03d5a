"""The chaos run: executions, thread-less and on threads, under worker kills and pauses,
PostgreSQL crash-restarts and killed backends, then the checker (tests/chaos/checker.py, SQL
only). Used by tests/test_chaos.py and, as `python -m tests.chaos.harness`, by scripts/chaos.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.checker import ChaosReport, admin, check, table_header, table_row
from tests.chaos.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
LG_DEPLOY_WORKER = (sys.executable, "-m", "lg_deploy", "worker")
BROKEN_WORKER = (sys.executable, "-m", "tests.chaos.broken")
START_SECONDS = 60.0
STOP_SECONDS = 15.0
PAUSE_RETRY_SECONDS = 0.5
SUBMIT_EVERY_SECONDS = 0.6  # the script's runs insert a batch this often
RUNS_PER_THREAD = 5  # the script's runs: T = R / this
CHAOS_GRAPHS = {
    "sleep": "lg_deploy.examples.sleep:graph",
    "turns": "tests.chaos.graph:graph",  # the thread runs' graph
}
TERMINAL = ("COMPLETED", "FAILED", "INTERRUPTED")


@dataclass(frozen=True)
class ChaosPlan:
    """What one chaos run does; the defaults are the CI sizes (N=500 of which R=60 on T=12
    threads, K=5, M=2, J=5, P=3)."""

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

    def __post_init__(self) -> None:
        if not 0 <= self.thread_runs <= self.executions:
            raise ValueError("thread_runs must be between 0 and executions")
        if self.thread_runs and not self.threads:
            raise ValueError("thread runs need threads")

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
    )


@dataclass(frozen=True)
class _Submission:
    """One execution to insert: `sleep` for `seconds`, or run number `run` of the `turns` graph
    on the run's thread number `thread`."""

    seconds: float
    thread: int | None = None
    run: int = 0


@dataclass
class _Fleet:
    """The worker processes of one run."""

    plan: ChaosPlan
    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)

    def start_one(self) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"worker-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(self.plan.worker_command),
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.processes.append(process)
        return process

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.pid not in self.killed and p.poll() is None]

    def by_pid(self, pid: int) -> subprocess.Popen[bytes] | None:
        return next((p for p in self.live() if p.pid == pid), None)

    def crashed(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.pid not in self.killed and p.poll() is not None]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_SECONDS)


def _schedule(plan: ChaosPlan, rng: random.Random) -> list[tuple[float, int, str]]:
    """(seconds from start, tie-break, kind) for every submission and fault."""
    window = plan.fault_window_seconds
    events = [(i * window / plan.submit_batches, 0, "submit") for i in range(plan.submit_batches)]
    for kind, count in (
        ("kill", plan.kills),
        ("restart", plan.restarts),
        ("terminate", plan.terminations),
    ):
        events += [(rng.uniform(0.5, window), 1, kind) for _ in range(count)]
    last_pause = max(0.5, window - plan.pause_seconds)
    events += [(rng.uniform(0.5, last_pause), 1, "pause") for _ in range(plan.pauses)]
    return sorted(events)


def _running_by_pid(url: str) -> dict[int, int]:
    """{worker pid: RUNNING executions it holds} (worker_id is host:pid:suffix)."""
    with admin(url) as conn:
        rows = conn.execute(
            "SELECT worker_id, count(*) FROM lg_deploy.executions"
            " WHERE status = 'RUNNING' GROUP BY worker_id"
        ).fetchall()
    return {int(str(worker_id).split(":")[-2]): int(count) for worker_id, count in rows}


class _Run:
    """Carries out one plan: submissions and faults in seeded order, then waits for the end."""

    def __init__(self, plan: ChaosPlan, cluster: Cluster, url: str, log_dir: Path) -> None:
        self.plan = plan
        self.cluster = cluster
        self.url = url
        self.rng = random.Random(plan.seed)
        self.fleet = _Fleet(plan, plan.worker_env(url), log_dir)
        self.ids: list[str] = []
        self.thread_ids: list[str] = []
        self.faults = dict.fromkeys(
            ("kills", "restarts", "terminations", "backends_terminated", "pauses", "paused_held"),
            0,
        )
        self.batches = self._batches()

    def _batches(self) -> list[list[_Submission]]:
        """The N submissions in insertion order, R of them at seeded places on seeded threads
        (R/T per thread), numbered 1..R in that order; cut into the plan's batches."""
        plan = self.plan
        seconds = [
            round(self.rng.uniform(plan.min_sleep_seconds, plan.max_sleep_seconds), 3)
            for _ in range(plan.executions)
        ]
        places = sorted(self.rng.sample(range(plan.executions), plan.thread_runs))
        owners = [run % plan.threads for run in range(plan.thread_runs)]
        self.rng.shuffle(owners)
        on_thread = dict(zip(places, owners, strict=True))
        submissions = [_Submission(wait) for wait in seconds]
        for run, place in enumerate(places, start=1):
            submissions[place] = _Submission(seconds[place], on_thread[place], run)
        size = -(-len(submissions) // plan.submit_batches)
        return [submissions[i : i + size] for i in range(0, len(submissions), size)]

    def create_threads(self) -> None:
        """The plan's T threads, as another system would make them."""
        with admin(self.url) as conn:
            for _ in range(self.plan.threads):
                row = conn.execute(
                    "INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id"
                ).fetchone()
                assert row is not None
                self.thread_ids.append(str(row[0]))

    def start_workers(self) -> None:
        for _ in range(self.plan.workers):
            self.fleet.start_one()
        deadline = time.monotonic() + START_SECONDS
        while len(self._listeners()) < self.plan.workers:
            crashed = self.fleet.crashed()
            if crashed or time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {self.fleet.log_dir}")
            time.sleep(0.1)

    def _listeners(self) -> list[int]:
        with admin(self.url) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'lg-deploy-listener'"
            ).fetchall()
        return [row[0] for row in rows]

    def play(self) -> float:
        """Run the schedule; returns the monotonic time of the last fault."""
        queue: list[tuple[float, int, str, int]] = [
            (at, tie, kind, 0) for at, tie, kind in _schedule(self.plan, self.rng)
        ]
        heapq.heapify(queue)
        began = time.monotonic()
        last_fault = began
        while queue:
            at, _tie, kind, pid = heapq.heappop(queue)
            time.sleep(max(0.0, began + at - time.monotonic()))
            if kind == "submit":
                self._submit()
                continue
            now = time.monotonic() - began
            if kind == "pause":
                paused = self._pause()
                if paused:
                    heapq.heappush(queue, (now + self.plan.pause_seconds, 2, "resume", paused))
                elif self.fleet.paused:  # pause one once another is resumed
                    heapq.heappush(queue, (now + PAUSE_RETRY_SECONDS, 1, "pause", 0))
                    continue
                else:  # too few live workers (some crashed): skipped, as faults["pauses"] shows
                    continue
            else:
                getattr(self, f"_{kind}")(pid)
            last_fault = time.monotonic()
        while self.batches:
            self._submit()
        return last_fault

    def _submit(self) -> None:
        """Insert the next batch: its `sleep` rows in one statement, its thread runs in another."""
        if not self.batches:
            return
        batch = self.batches.pop(0)
        sleeps = [item.seconds for item in batch if item.thread is None]
        turns = [
            (item.run, item.seconds, self.thread_ids[item.thread])
            for item in batch
            if item.thread is not None
        ]
        with admin(self.url) as conn:
            if sleeps:
                rows = conn.execute(
                    "INSERT INTO lg_deploy.executions (graph_id, input, max_attempts)"
                    " SELECT 'sleep', jsonb_build_object('seconds', s), %s"
                    " FROM unnest(%s::float8[]) AS s RETURNING execution_id",
                    (self.plan.max_attempts, sleeps),
                ).fetchall()
                self.ids += [str(row[0]) for row in rows]
            if turns:
                runs, seconds, threads = (list(column) for column in zip(*turns, strict=True))
                rows = conn.execute(
                    "INSERT INTO lg_deploy.executions (graph_id, input, thread_id, max_attempts)"
                    " SELECT 'turns', jsonb_build_object('run', r, 'seconds', s), t, %s"
                    " FROM unnest(%s::integer[], %s::float8[], %s::uuid[]) AS u(r, s, t)"
                    " RETURNING execution_id",
                    (self.plan.max_attempts, runs, seconds, threads),
                ).fetchall()
                self.ids += [str(row[0]) for row in rows]

    def _kill(self, _pid: int) -> None:
        candidates = [p for p in self.fleet.live() if p.pid not in self.fleet.paused]
        if not candidates:
            return
        victim = self.rng.choice(candidates)
        self.fleet.killed.add(victim.pid)
        victim.kill()
        victim.wait(timeout=STOP_SECONDS)
        self.fleet.start_one()
        self.faults["kills"] += 1

    def _restart(self, _pid: int) -> None:
        self.cluster.restart_immediate()
        self.faults["restarts"] += 1

    def _terminate(self, _pid: int) -> None:
        with admin(self.url) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'lg-deploy%'"
            ).fetchall()
        self.faults["terminations"] += 1
        self.faults["backends_terminated"] += sum(1 for (done,) in rows if done)

    def _pause(self) -> int:
        """SIGSTOP a worker, preferably one holding RUNNING executions; its pid (0: none).

        At least one worker is never paused, so someone is there to recover expired leases.
        """
        held = _running_by_pid(self.url)
        candidates = [p for p in self.fleet.live() if p.pid not in self.fleet.paused]
        if len(candidates) < 2:
            return 0
        holding = [p for p in candidates if held.get(p.pid)]
        pool = holding or candidates
        victim = self.rng.choice(pool)
        victim.send_signal(signal.SIGSTOP)
        self.fleet.paused.add(victim.pid)
        self.faults["pauses"] += 1
        self.faults["paused_held"] += held.get(victim.pid, 0)
        return victim.pid

    def _resume(self, pid: int) -> None:
        self.fleet.paused.discard(pid)
        process = self.fleet.by_pid(pid)
        if process is not None:
            process.send_signal(signal.SIGCONT)

    def wait_terminal(self, last_fault: float) -> float | None:
        """Seconds from the last fault until every submitted execution is final (None: never)."""
        deadline = last_fault + self.plan.settle_seconds
        while True:
            with admin(self.url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM lg_deploy.executions"
                    " WHERE status = ANY(%s) AND execution_id = ANY(%s::uuid[])",
                    (list(TERMINAL), self.ids),
                ).fetchone()
            if row is not None and row[0] == len(self.ids):
                return max(0.0, time.monotonic() - last_fault)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def run_chaos(cluster: Cluster, plan: ChaosPlan, log_dir: Path) -> ChaosReport:
    """Run `plan` on a new database of `cluster`, stop every worker, and check it from SQL."""
    log_dir.mkdir(parents=True, exist_ok=True)
    url = cluster.create_database()
    run = _Run(plan, cluster, url, log_dir)
    run.create_threads()
    began = time.monotonic()
    try:
        run.start_workers()
        last_fault = run.play()
        settled = run.wait_terminal(last_fault)
        crashed = run.fleet.crashed()
    finally:
        run.fleet.stop_all()
    report = check(url, run.ids, run.thread_ids, seed=plan.seed)
    report.terminal_after_last_fault_seconds = settled
    report.run_seconds = time.monotonic() - began
    report.crashed_workers = len(crashed)
    report.faults = run.faults
    for process in crashed:
        report.notes.append(f"worker pid {process.pid} exited {process.returncode}")
    report.notes.append(f"worker logs: {log_dir}")
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.chaos.harness`: several seeded runs on one private server, as a table."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.harness", description=__doc__)
    parser.add_argument("--seeds", type=int, default=10, help="how many runs")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--executions", type=int, default=5000, help="N")
    parser.add_argument(
        "--thread-runs", type=int, default=None, help="R of the N on threads (default N/10)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help=f"T (default R/{RUNS_PER_THREAD})"
    )
    parser.add_argument("--kills", type=int, default=50, help="K")
    parser.add_argument("--restarts", type=int, default=10, help="M")
    parser.add_argument("--terminations", type=int, default=20, help="J")
    parser.add_argument("--pauses", type=int, default=10, help="P")
    parser.add_argument("--window", type=float, default=120.0, help="fault window, seconds")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    log_root = args.log_dir or Path(tempfile.mkdtemp(prefix="lgd-chaos-logs-"))
    print(f"worker logs under {log_root}", flush=True)
    print(table_header(), flush=True)
    thread_runs = args.executions // 10 if args.thread_runs is None else args.thread_runs
    threads = args.threads if args.threads is not None else -(-thread_runs // RUNS_PER_THREAD)
    reports = []
    cluster = Cluster()
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            plan = ChaosPlan(
                seed=seed,
                executions=args.executions,
                thread_runs=thread_runs,
                threads=threads,
                kills=args.kills,
                restarts=args.restarts,
                terminations=args.terminations,
                pauses=args.pauses,
                fault_window_seconds=args.window,
                submit_batches=max(1, round(args.window / SUBMIT_EVERY_SECONDS)),
            )
            reports.append(run_chaos(cluster, plan, log_root / f"seed-{seed}"))
            print(table_row(reports[-1]), flush=True)
    finally:
        cluster.close()
    for report in reports:
        for reason, count in report.failure_reasons.items():
            print(f"seed {report.seed}: {count} FAILED: {reason}")
        for reason, count in report.retry_reasons.items():
            print(f"seed {report.seed}: {count} retried: {reason}")
        for note in [] if report.ok else report.notes:
            print(f"seed {report.seed}: {note}")
    failing = [report.seed for report in reports if not report.ok]
    verdict = f"; failing seeds {failing}" if failing else ""
    print(f"{len(reports) - len(failing)} of {len(reports)} runs OK{verdict}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
