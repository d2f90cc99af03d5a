"""The chaos run: executions, thread-less and on threads, under worker kills and pauses,
PostgreSQL crash-restarts and killed backends, some of them followed by streaming clients
through `lg-deploy serve` processes that are killed too; then the checker
(tests/chaos/checker.py, SQL and what the clients received). Used by tests/test_chaos.py and,
as `python -m tests.chaos.harness`, by scripts/chaos.
"""

from __future__ import annotations

import argparse
import heapq
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from tests.chaos.checker import ChaosReport, admin, check, table_header, table_row
from tests.chaos.cluster import Cluster
from tests.chaos.plan import THREAD_STREAM_MODES, TICKS_STREAM_MODES, ChaosPlan
from tests.chaos.stream_checker import ReceivedStream, StreamFigures
from tests.chaos.streams import ApiServers, StreamClients

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60.0
STOP_SECONDS = 15.0
PAUSE_RETRY_SECONDS = 0.5
SUBMIT_EVERY_SECONDS = 0.6  # the script's runs insert a batch this often
RUNS_PER_THREAD = 5  # the script's runs: T = R / this
STREAMED_PER_EXECUTIONS = 25  # the script's runs: S = N / this
TERMINAL = ("COMPLETED", "FAILED", "INTERRUPTED")


@dataclass(frozen=True)
class _Submission:
    """One execution to insert: `sleep` for `seconds`, or run number `run` of the `turns` graph
    on the run's thread number `thread`; `streamed`: it records its stream (a thread-less one
    runs `ticks` for `seconds` instead of `sleep`) and clients follow it."""

    seconds: float
    thread: int | None = None
    run: int = 0
    streamed: bool = False


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
    events += [(rng.uniform(0.5, window), 1, "api_kill") for _ in range(plan.api_kills)]
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
        self.api = ApiServers(plan.serve_env(url), log_dir, ROOT)
        self.clients = StreamClients(plan.seed, self.api.urls)
        self.ids: list[str] = []
        self.thread_ids: list[str] = []
        self.faults = dict.fromkeys(
            (
                "kills",
                "restarts",
                "terminations",
                "backends_terminated",
                "pauses",
                "paused_held",
                "api_kills",
            ),
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
        self._choose_streamed(submissions)
        size = -(-len(submissions) // plan.submit_batches)
        return [submissions[i : i + size] for i in range(0, len(submissions), size)]

    def _choose_streamed(self, submissions: list[_Submission]) -> None:
        """Mark the S streamed ones at seeded places: some thread runs, the rest `ticks` runs of
        seeded seconds. A random generator of their own keeps the rest of the plan as it was."""
        plan = self.plan
        rng = random.Random(f"streams:{plan.seed}")
        on_threads = [i for i, item in enumerate(submissions) if item.thread is not None]
        thread_less = [i for i, item in enumerate(submissions) if item.thread is None]
        for place in rng.sample(on_threads, plan.streamed_thread_runs):
            submissions[place] = replace(submissions[place], streamed=True)
        ticks = plan.streamed_runs - plan.streamed_thread_runs
        for place in rng.sample(thread_less, ticks):
            seconds = round(rng.uniform(plan.min_stream_seconds, plan.max_stream_seconds), 3)
            submissions[place] = _Submission(seconds, streamed=True)

    def create_threads(self) -> None:
        """The plan's T threads, as another system would make them."""
        with admin(self.url) as conn:
            for _ in range(self.plan.threads):
                row = conn.execute(
                    "INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id"
                ).fetchone()
                assert row is not None
                self.thread_ids.append(str(row[0]))

    def start_processes(self) -> None:
        """The workers and the serve processes, up and listening; then the clients' loop."""
        for _ in range(self.plan.workers):
            self.fleet.start_one()
        for _ in range(self.plan.servers):
            self.api.start_one()
        deadline = time.monotonic() + START_SECONDS
        while len(self._listeners()) < self.plan.workers + self.plan.servers:
            crashed = self.fleet.crashed() or self.api.crashed()
            if crashed or time.monotonic() > deadline:
                raise RuntimeError(f"processes did not start; see {self.fleet.log_dir}")
            time.sleep(0.1)
        self.api.wait_ready()
        self.clients.start()

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
        """Insert the next batch: its `sleep` rows in one statement, its `ticks` rows in another,
        its thread runs in a third; clients start following the streamed ones."""
        if not self.batches:
            return
        batch = self.batches.pop(0)
        plain = [item for item in batch if item.thread is None]
        on_threads = [
            (item, self.thread_ids[item.thread]) for item in batch if item.thread is not None
        ]
        with admin(self.url) as conn:
            self._insert_sleeps([item.seconds for item in plain if not item.streamed], conn)
            self._insert_ticks([item.seconds for item in plain if item.streamed], conn)
            self._insert_turns(on_threads, conn)

    def _insert_sleeps(self, seconds: list[float], conn: psycopg.Connection[Any]) -> None:
        if not seconds:
            return
        rows = conn.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, max_attempts)"
            " SELECT 'sleep', jsonb_build_object('seconds', s), %s"
            " FROM unnest(%s::float8[]) AS s RETURNING execution_id",
            (self.plan.max_attempts, seconds),
        ).fetchall()
        self.ids += [str(row[0]) for row in rows]

    def _insert_ticks(self, seconds: list[float], conn: psycopg.Connection[Any]) -> None:
        if not seconds:
            return
        rows = conn.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, max_attempts, stream_mode)"
            " SELECT 'ticks', jsonb_build_object('ticks', %s::integer, 'seconds', s), %s,"
            " %s::text[] FROM unnest(%s::float8[]) AS s RETURNING execution_id",
            (self.plan.ticks, self.plan.max_attempts, list(TICKS_STREAM_MODES), seconds),
        ).fetchall()
        self.ids += [str(row[0]) for row in rows]
        for (run_id,) in rows:
            self.clients.follow(str(run_id), None, self.plan.clients_per_run)

    def _insert_turns(
        self, items: list[tuple[_Submission, str]], conn: psycopg.Connection[Any]
    ) -> None:
        if not items:
            return
        rows = conn.execute(
            "INSERT INTO lg_deploy.executions"
            " (graph_id, input, thread_id, max_attempts, stream_mode)"
            " SELECT 'turns', jsonb_build_object('run', r, 'seconds', s), t, %s,"
            " CASE WHEN streamed THEN %s::text[] END"
            " FROM unnest(%s::integer[], %s::float8[], %s::uuid[], %s::boolean[])"
            " AS u(r, s, t, streamed)"
            " RETURNING execution_id, thread_id, stream_mode IS NOT NULL",
            (
                self.plan.max_attempts,
                list(THREAD_STREAM_MODES),
                [item.run for item, _ in items],
                [item.seconds for item, _ in items],
                [thread_id for _, thread_id in items],
                [item.streamed for item, _ in items],
            ),
        ).fetchall()
        self.ids += [str(row[0]) for row in rows]
        for run_id, thread_id, streamed in rows:
            if streamed:
                self.clients.follow(str(run_id), str(thread_id), self.plan.clients_per_run)

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

    def _api_kill(self, _pid: int) -> None:
        self.api.kill_one(self.rng)
        self.faults["api_kills"] += 1

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
    """Run `plan` on a new database of `cluster`, stop every process, and check it from SQL and
    what the streaming clients received."""
    log_dir.mkdir(parents=True, exist_ok=True)
    url = cluster.create_database()
    run = _Run(plan, cluster, url, log_dir)
    run.create_threads()
    began = time.monotonic()
    received: list[ReceivedStream] = []
    try:
        run.start_processes()
        last_fault = run.play()
        settled = run.wait_terminal(last_fault)
        received = run.clients.finish(plan.stream_end_seconds)
        crashed = run.fleet.crashed()
        crashed_servers = run.api.crashed()
    finally:
        run.clients.finish(0.0)  # after an error: the clients, if still going, go
        run.api.stop_all()
        run.fleet.stop_all()
    report = check(url, run.ids, run.thread_ids, seed=plan.seed, streams=received)
    report.terminal_after_last_fault_seconds = settled
    report.run_seconds = time.monotonic() - began
    report.crashed_workers = len(crashed)
    report.crashed_servers = len(crashed_servers)
    report.faults = run.faults
    for process in [*crashed, *crashed_servers]:
        report.notes.append(f"pid {process.pid} exited {process.returncode}")
    report.notes.append(f"worker and serve logs: {log_dir}")
    return report


def stream_line(streams: StreamFigures) -> str:
    """The stream figures of one run in words."""
    return (
        f"streams: {streams.streamed_runs} runs ({streams.retried_runs} with events of several"
        f" attempts), {streams.stored_events} events stored; {streams.clients} clients received"
        f" {streams.received_events} over {streams.connections} connections ({streams.hangups}"
        f" hung up by the client, {streams.broken} broken, {streams.refused} requests refused);"
        f" lost {streams.lost}, duplicated {streams.duplicated}, out of order"
        f" {streams.out_of_order}, mismatched {streams.mismatched}, unfinished"
        f" {streams.unfinished}, silent {streams.silent}"
    )


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
    parser.add_argument(
        "--streamed-runs",
        type=int,
        default=None,
        help=f"S of the N followed by streaming clients (default N/{STREAMED_PER_EXECUTIONS})",
    )
    parser.add_argument("--api-kills", type=int, default=10, help="A serve process SIGKILLs")
    parser.add_argument("--window", type=float, default=120.0, help="fault window, seconds")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    log_root = args.log_dir or Path(tempfile.mkdtemp(prefix="lgd-chaos-logs-"))
    print(f"worker and serve logs under {log_root}", flush=True)
    print(table_header(), flush=True)
    thread_runs = args.executions // 10 if args.thread_runs is None else args.thread_runs
    threads = args.threads if args.threads is not None else -(-thread_runs // RUNS_PER_THREAD)
    streamed = args.streamed_runs
    streamed = args.executions // STREAMED_PER_EXECUTIONS if streamed is None else streamed
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
                streamed_runs=streamed,
                api_kills=args.api_kills,
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
        print(f"seed {report.seed}: {stream_line(report.streams)}")
        for note in [] if report.ok else report.notes:
            print(f"seed {report.seed}: {note}")
    failing = [report.seed for report in reports if not report.ok]
    verdict = f"; failing seeds {failing}" if failing else ""
    print(f"{len(reports) - len(failing)} of {len(reports)} runs OK{verdict}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
