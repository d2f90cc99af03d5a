"""lg-deploy child processes and the SQL probes the fault tests read them with."""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from lg_deploy.db.listener import LISTENER_APPLICATION_NAME
from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.waiting import wait_until

SqlConn = psycopg.Connection[Any]
START_SECONDS = 30.0


@dataclass
class Process:
    """One `lg-deploy` child process and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def assert_alive(self) -> None:
        """Fail with its output if it has exited."""
        code = self.process.poll()
        assert code is None, f"process exited with {code}:\n{self.log_path.read_text()}"


@dataclass
class Launcher:
    """Starts `lg-deploy <command>` processes and kills every one of them at the end."""

    folder: Path
    started: list[Process] = field(default_factory=list)

    def start(self, env: dict[str, str], command: str, **settings: str) -> Process:
        """A new process with `env` plus LG_DEPLOY_* `settings` (not waited for)."""
        log_path = self.folder / f"{command}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*LG_DEPLOY_COMMAND, command],
                env={**env, **settings},
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.started.append(Process(process, log_path))
        return self.started[-1]

    def kill_all(self) -> None:
        """SIGKILL every process still running (resumed first if paused) and reap it."""
        for child in self.started:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGCONT)
                child.process.kill()
            child.process.wait(timeout=10)


def listener_pids(conn: SqlConn) -> list[int]:
    """Backend pids of the lg-deploy LISTEN connections to the database `conn` is on."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        (LISTENER_APPLICATION_NAME,),
    ).fetchall()
    return [row[0] for row in rows]


def wait_listening(url: str, count: int, *processes: Process) -> None:
    """Wait until `count` lg-deploy processes have their LISTEN connection up."""
    with psycopg.connect(url, autocommit=True) as conn:

        def ready() -> bool:
            for child in processes:
                child.assert_alive()
            return len(listener_pids(conn)) >= count

        wait_until(ready, START_SECONDS)


def insert(sql: SqlConn, graph_id: str, graph_input: dict[str, Any]) -> str:
    """INSERT one execution as another system would; its id."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES (%s, %s::jsonb)"
        " RETURNING execution_id",
        (graph_id, json.dumps(graph_input)),
    ).fetchone()
    assert row is not None
    return str(row[0])


def row_of(sql: SqlConn, execution_id: str) -> dict[str, Any]:
    """The execution's columns now."""
    cursor = sql.execute(
        "SELECT * FROM lg_deploy.executions WHERE execution_id = %s", (execution_id,)
    )
    names = [column.name for column in cursor.description or ()]
    values = cursor.fetchone()
    assert values is not None
    return dict(zip(names, values, strict=True))


def worker_pid(row: dict[str, Any]) -> int | None:
    """The OS pid inside the row's worker id (host:pid:suffix)."""
    worker_id = row["worker_id"]
    return int(worker_id.split(":")[-2]) if worker_id else None


def status_counts(sql: SqlConn) -> dict[str, int]:
    """How many executions are in each status."""
    rows = sql.execute("SELECT status, count(*) FROM lg_deploy.executions GROUP BY 1").fetchall()
    return {status: count for status, count in rows}
