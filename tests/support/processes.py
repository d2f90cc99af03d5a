"""`lg-deploy` child processes: the command, worker processes and their launcher, JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lg_deploy.db.listener import LISTENER_APPLICATION_NAME
from tests.support.waiting import wait_until

LG_DEPLOY_COMMAND = [sys.executable, "-m", "lg_deploy"]
WAIT_SECONDS = 15.0
START_SECONDS = 30.0

SqlConn = psycopg.Connection[Any]


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among the lines of a log file (other lines are skipped)."""
    entries = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


@dataclass
class Worker:
    """One `lg-deploy worker` process and the file its stderr (JSON logs) goes to."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_messages(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return json_lines(self.log_path)

    def assert_alive(self) -> None:
        """Fail with the process's stderr if it has exited."""
        code = self.process.poll()
        assert code is None, f"worker exited with {code}:\n{self.log_path.read_text()}"


@dataclass
class Workers:
    """Starts worker processes on the test database; the fixture kills them all afterwards."""

    env: dict[str, str]
    tmp_path: Path
    sql: SqlConn
    started: list[Worker] = field(default_factory=list)

    def start(self, **settings: str) -> Worker:
        """A running worker (its LISTEN connection up) with extra LG_DEPLOY_* `settings`."""
        listening = set(listener_pids(self.sql))  # a killed worker's may still be among them
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*LG_DEPLOY_COMMAND, "worker"],
                env={**self.env, **settings},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        worker = Worker(process, log_path)
        self.started.append(worker)

        def ready() -> bool:
            worker.assert_alive()
            return bool(set(listener_pids(self.sql)) - listening)

        wait_until(ready, START_SECONDS)
        return worker


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path, sql: SqlConn) -> Iterator[Workers]:
    """A worker launcher; every process it started is killed at teardown."""
    launcher = Workers(worker_env, tmp_path, sql)
    try:
        yield launcher
    finally:
        for worker in launcher.started:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(timeout=10)


def listener_pids(sql: SqlConn) -> list[int]:
    """Backend pids of the lg-deploy LISTEN connections to the test database."""
    rows = sql.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        (LISTENER_APPLICATION_NAME,),
    ).fetchall()
    return [row[0] for row in rows]


def status_counts(sql: SqlConn) -> dict[str, int]:
    """How many executions are in each status."""
    rows = sql.execute("SELECT status, count(*) FROM lg_deploy.executions GROUP BY 1").fetchall()
    return {status: count for status, count in rows}


def wait_all_completed(sql: SqlConn, total: int, timeout: float = WAIT_SECONDS) -> None:
    """Wait until `total` executions are COMPLETED; fail at once if any FAILED."""

    def done() -> bool:
        counts = status_counts(sql)
        assert counts.get("FAILED", 0) == 0, counts
        return counts.get("COMPLETED", 0) == total

    wait_until(done, timeout)
