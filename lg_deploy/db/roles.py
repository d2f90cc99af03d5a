"""Apply `sql/roles.sql`: lg-deploy's least-privilege roles and their grants (docs/security.md)."""

from __future__ import annotations

from typing import LiteralString

import psycopg

from lg_deploy.db.queries import sql_root

ROLES_FILE_NAME = "roles.sql"


async def apply_roles(conninfo: str) -> None:
    """Create the missing roles and grant each exactly its privileges, in one transaction."""
    # The script ships with the package, never comes from input (see db.queries.query).
    script: LiteralString = (sql_root() / ROLES_FILE_NAME).read_text(encoding="utf-8")
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, prepare_threshold=None)
    async with conn, conn.transaction():
        await conn.execute(script)
