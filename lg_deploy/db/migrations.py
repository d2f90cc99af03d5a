"""Apply the numbered migrations in `sql/migrations/` once each, under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import psycopg

from lg_deploy.db.queries import sql_root

logger = logging.getLogger(__name__)

# pg_advisory_lock key: the bytes of "lgdeploy" as a bigint, so concurrent starts serialise.
MIGRATION_LOCK_KEY = int.from_bytes(b"lgdeploy", "big") & 0x7FFF_FFFF_FFFF_FFFF
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_LEDGER: LiteralString = """
CREATE SCHEMA IF NOT EXISTS lg_deploy;
CREATE TABLE IF NOT EXISTS lg_deploy.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    path: Path


def available_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files in version order; a misnamed or duplicated file is an error."""
    folder = folder or sql_root() / "migrations"
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match.group("version"))
        if version in found:
            raise ValueError(f"two migrations have version {version}")
        found[version] = Migration(version, match.group("name"), path)
    return [found[v] for v in sorted(found)]


async def migrate(conninfo: str, folder: Path | None = None) -> list[int]:
    """Apply every pending migration in order; returns the versions applied by this call."""
    migrations = available_migrations(folder)
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await conn.execute(_CREATE_LEDGER)
            cursor = await conn.execute("SELECT version FROM lg_deploy.schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                await _apply(conn, migration)
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


async def _apply(conn: psycopg.AsyncConnection[tuple[object, ...]], migration: Migration) -> None:
    logger.info("applying migration %04d_%s", migration.version, migration.name)
    # Migration files ship with the package, never come from input (see db.queries.query).
    script: LiteralString = migration.path.read_text(encoding="utf-8")
    async with conn.transaction():
        await conn.execute(script)
        await conn.execute(
            "INSERT INTO lg_deploy.schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
