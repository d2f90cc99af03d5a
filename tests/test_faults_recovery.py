"""Worker faults, on real processes: a killed worker's execution is recovered with the default
lease, a killed worker's graph resumes after its last checkpointed step, and workers starting
together all set up the checkpoint tables.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.chaos.processes import Launcher, SqlConn, insert, row_of, wait_listening, worker_pid
from tests.support.waiting import wait_until

DEFAULT_RECOVERY_WITHIN_SECONDS = 15.0


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Launcher]:
    """Starts lg-deploy processes; every one is killed at teardown."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.kill_all()


@pytest.mark.timeout(90)
@pytest.mark.req("DUR-LEASE")
def test_killed_workers_execution_is_recovered_within_15s_with_default_lease(
    sql: SqlConn, worker_env: dict[str, str], db_url: str, spawn: Launcher
) -> None:
    """SIGKILL a worker mid-run (lease 10 s, recovery 2 s): another takes it over within 15 s,
    by the lease alone (as on another host: the same-host shortcut is off)."""
    worker_env = {**worker_env, "LG_DEPLOY_RECOVER_GONE_WORKERS": "false"}
    first = spawn.start(worker_env, "worker")
    wait_listening(db_url, 1, first)
    execution_id = insert(sql, "sleep", {"seconds": 60})
    wait_until(lambda: worker_pid(row_of(sql, execution_id)) == first.process.pid, 10)
    second = spawn.start(worker_env, "worker")
    wait_listening(db_url, 2, second)
    first.process.kill()
    killed = time.monotonic()

    def taken_over() -> bool:
        row = row_of(sql, execution_id)
        return row["status"] == "QUEUED" or worker_pid(row) == second.process.pid

    wait_until(taken_over, 30)
    seconds = time.monotonic() - killed
    print(f"recovered {seconds:.2f} s after SIGKILL (lease 10 s, recovery interval 2 s)")
    assert seconds <= DEFAULT_RECOVERY_WITHIN_SECONDS
    reason = sql.execute(
        "SELECT error FROM lg_deploy.execution_events WHERE execution_id = %s"
        " AND from_status = 'RUNNING' AND to_status = 'QUEUED'",
        (execution_id,),
    ).fetchone()
    assert reason is not None
    assert "lease expired" in reason[0]
    second.assert_alive()


STEPS_GRAPH = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph


    class State(TypedDict, total=False):
        folder: str
        seconds: float
        done: list[str]


    def ran(state: State, step: str) -> int:
        with open(Path(state["folder"]) / f"{step}.runs", "a") as runs:
            runs.write("ran\\n")
        return len((Path(state["folder"]) / f"{step}.runs").read_text().splitlines())


    async def step_one(state: State) -> State:
        ran(state, "one")
        return {"done": ["one"]}


    async def step_two(state: State) -> State:
        if ran(state, "two") == 1:  # the first run is the one the test kills
            await asyncio.sleep(state["seconds"])
        return {"done": [*state["done"], "two"]}


    async def step_three(state: State) -> State:
        return {"done": [*state["done"], "three"]}


    builder = StateGraph(State)
    builder.add_node("step_one", step_one)
    builder.add_node("step_two", step_two)
    builder.add_node("step_three", step_three)
    builder.add_edge(START, "step_one")
    builder.add_edge("step_one", "step_two")
    builder.add_edge("step_two", "step_three")
    builder.add_edge("step_three", END)
    graph = builder.compile()
    """
)


def runs(folder: Path, step: str) -> int:
    """How many times a step of the steps graph has started."""
    path = folder / f"{step}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.timeout(90)
@pytest.mark.req("FAULT-RESUME")
@pytest.mark.parametrize(("checkpoints", "step_one_runs"), [("true", 1), ("false", 2)])
def test_killed_worker_resumes_after_the_last_checkpointed_step(
    sql: SqlConn,
    worker_env: dict[str, str],
    db_url: str,
    spawn: Launcher,
    tmp_path: Path,
    checkpoints: str,
    step_one_runs: int,
) -> None:
    """Killed in step 2: with checkpoints step 1 is not run again (without, it is: the control)."""
    graph_file = tmp_path / "steps.py"
    graph_file.write_text(STEPS_GRAPH)
    folder = tmp_path / "runs"
    folder.mkdir()
    env = {
        **worker_env,
        "LG_DEPLOY_GRAPHS": json.dumps({"steps": f"{graph_file}:graph"}),
        "LG_DEPLOY_CHECKPOINTS": checkpoints,
        "LG_DEPLOY_LEASE_SECONDS": "2",
        "LG_DEPLOY_RECOVERY_INTERVAL_SECONDS": "0.5",
    }
    workers = [spawn.start(env, "worker")]
    wait_listening(db_url, 1, *workers)
    workers.append(spawn.start(env, "worker"))
    wait_listening(db_url, 2, *workers)
    execution_id = insert(sql, "steps", {"folder": str(folder), "seconds": 30})
    wait_until(lambda: runs(folder, "two") == 1, 20)
    owner = worker_pid(row_of(sql, execution_id))
    (victim,) = [w for w in workers if w.process.pid == owner]
    victim.process.kill()
    wait_until(lambda: row_of(sql, execution_id)["status"] in ("COMPLETED", "FAILED"), 30)
    row = row_of(sql, execution_id)
    assert row["status"] == "COMPLETED", row
    assert row["attempts"] == 2
    assert row["output"]["done"] == ["one", "two", "three"]
    assert runs(folder, "two") == 2
    assert runs(folder, "one") == step_one_runs


@pytest.mark.timeout(90)
@pytest.mark.req("FAULT-RESUME", "THREAD-RUNS")
def test_a_killed_workers_thread_run_resumes_from_its_checkpoint_and_frees_the_thread(
    sql: SqlConn, worker_env: dict[str, str], db_url: str, spawn: Launcher, tmp_path: Path
) -> None:
    """A run on a thread (inserted by SQL) killed in step 2 resumes on another worker after
    step 1 though LG_DEPLOY_CHECKPOINTS is off; one outcome; the thread ends idle with its
    values."""
    graph_file = tmp_path / "steps.py"
    graph_file.write_text(STEPS_GRAPH)
    folder = tmp_path / "runs"
    folder.mkdir()
    env = {
        **worker_env,
        "LG_DEPLOY_GRAPHS": json.dumps({"steps": f"{graph_file}:graph"}),
        "LG_DEPLOY_CHECKPOINTS": "false",
        "LG_DEPLOY_LEASE_SECONDS": "2",
        "LG_DEPLOY_RECOVERY_INTERVAL_SECONDS": "0.5",
    }
    workers = [spawn.start(env, "worker")]
    wait_listening(db_url, 1, *workers)
    workers.append(spawn.start(env, "worker"))
    wait_listening(db_url, 2, *workers)
    (thread_id,) = sql.execute(
        "INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id"
    ).fetchone() or (None,)
    (execution_id,) = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input, thread_id)"
        " VALUES ('steps', %s::jsonb, %s) RETURNING execution_id",
        (json.dumps({"folder": str(folder), "seconds": 30}), thread_id),
    ).fetchone() or (None,)
    wait_until(lambda: runs(folder, "two") == 1, 20)
    owner = worker_pid(row_of(sql, str(execution_id)))
    (victim,) = [w for w in workers if w.process.pid == owner]
    victim.process.kill()
    final = ("COMPLETED", "FAILED", "INTERRUPTED")
    wait_until(lambda: row_of(sql, str(execution_id))["status"] in final, 30)
    row = row_of(sql, str(execution_id))
    assert (row["status"], row["attempts"]) == ("COMPLETED", 2), row
    assert row["output"]["done"] == ["one", "two", "three"]
    assert (runs(folder, "one"), runs(folder, "two")) == (1, 2)
    outcomes = sql.execute(
        "SELECT count(*) FROM lg_deploy.execution_events"
        " WHERE execution_id = %s AND to_status = 'COMPLETED'",
        (execution_id,),
    ).fetchone()
    assert outcomes == (1,)
    thread = sql.execute(
        "SELECT status, \"values\" -> 'done' FROM lg_deploy.threads WHERE thread_id = %s",
        (thread_id,),
    ).fetchone()
    assert thread == ("idle", ["one", "two", "three"])


@pytest.mark.timeout(90)
@pytest.mark.req("FAULT-RESUME", "CARD-MIGRATIONS")
def test_workers_starting_together_with_checkpoints_all_start(
    sql: SqlConn, worker_env: dict[str, str], db_url: str, spawn: Launcher
) -> None:
    """Two workers set up the checkpoint tables at the same moment: both start, neither crashes."""
    env = {**worker_env, "LG_DEPLOY_CHECKPOINTS": "true"}
    # The checkpointer's version table, as its own first migration makes it, held locked so
    # both workers reach the version check before either has migrated: a start-up race, made
    # certain instead of left to timing.
    sql.execute("CREATE TABLE lg_deploy.checkpoint_migrations (v INTEGER PRIMARY KEY)")
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE lg_deploy.checkpoint_migrations IN ACCESS EXCLUSIVE MODE")
        workers = [spawn.start(env, "worker"), spawn.start(env, "worker")]

        def blocked() -> int:
            """Once both checkpoint pools are open: statements waiting on a lock (else 0)."""
            for child in workers:
                child.assert_alive()
            row = sql.execute(
                "SELECT count(*) FILTER (WHERE application_name = 'lg-deploy-checkpoints'),"
                " count(*) FILTER (WHERE wait_event_type = 'Lock')"
                " FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchone()
            assert row is not None
            return row[1] if row[0] >= len(workers) else 0

        wait_until(lambda: blocked() >= 1, 30)
        # The second worker reaches the same check within moments, unless it waits its turn.
        deadline = time.monotonic() + 2.0
        while blocked() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        holder.commit()
    wait_listening(db_url, 2, *workers)
