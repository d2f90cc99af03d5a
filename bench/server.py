"""A private PostgreSQL for one benchmark run (pgserver in a temporary folder) and databases."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lg_deploy.db.migrations import migrate


class Server:
    """pgserver on a unix socket in its own folder; as root the data belongs to `pgserver`."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import pgserver
            from pgserver import _commands

        self.bin_dir = Path(_commands.POSTGRES_BIN_PATH)
        self.folder = Path(tempfile.mkdtemp(prefix="lgd-bench-pg-"))
        self._server: Any = pgserver.get_server(self.folder / "data", cleanup_mode="delete")
        self.url = str(self._server.get_uri())
        self.params = conninfo_to_dict(self.url)

    def version(self) -> str:
        """`SELECT version()`, shortened to its first two words."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"

    def setting(self, name: str) -> str:
        """One server setting, as SHOW prints it."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute(pgsql.SQL("SHOW {}").format(pgsql.Identifier(name))).fetchone()
        return str(row[0]) if row else "?"

    def create_database(self, prefix: str = "bench") -> str:
        """A new, migrated lg-deploy database; its connection string."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        url = make_conninfo(self.url, dbname=name)
        asyncio.run(migrate(url))
        return url

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database` (its clients must be gone)."""
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )

    def close(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
