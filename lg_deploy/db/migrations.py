"""Apply the numbered migrations in `sql/migrations/` once each, under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import psycopg

from lg_deploy.db.queries import sql_root
from lg_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

# Advisory lock key: the bytes of "lgdeploy" as a bigint, so concurrent starts serialise.
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
    """Apply every pending migration in order; returns the versions applied by this call.

    Each migration runs in its own transaction under a transaction-level advisory lock and
    re-reads the ledger once it holds it, so concurrent starts are safe, also through PgBouncer
    in transaction mode (where a session lock could be taken and released on two servers).
    """
    migrations = available_migrations(folder)
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=None
    ) as conn:
        if not await _anything_pending(conn, migrations):
            return applied_now  # no DDL at all, so a role without CREATE may start too
        try:
            async with conn.transaction():
                await _lock(conn)
                await conn.execute(_CREATE_LEDGER)
            for migration in migrations:
                async with conn.transaction():
                    await _lock(conn)
                    if not await _is_applied(conn, migration.version):
                        await _apply(conn, migration)
                        applied_now.append(migration.version)
        except psycopg.errors.InsufficientPrivilege as error:
            raise MigrationRefused(str(error).splitlines()[0]) from error
    return applied_now


class MigrationRefused(ConfigError):
    """Migrations are pending but this database user may not apply them."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"migrations are pending but this user may not apply them ({reason}): run"
            " `lg-deploy migrate` as the schema owner, or start with"
            " LG_DEPLOY_MIGRATE_ON_START=false once the owner has migrated"
        )


async def _anything_pending(
    conn: psycopg.AsyncConnection[tuple[object, ...]], migrations: list[Migration]
) -> bool:
    """Whether the ledger lacks any of `migrations` (True while it cannot be read)."""
    try:
        cursor = await conn.execute("SELECT version FROM lg_deploy.schema_migrations")
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
        return True
    applied = {row[0] for row in await cursor.fetchall()}
    return any(migration.version not in applied for migration in migrations)


async def _lock(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))


async def _is_applied(conn: psycopg.AsyncConnection[tuple[object, ...]], version: int) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM lg_deploy.schema_migrations WHERE version = %s", (version,)
    )
    return await cursor.fetchone() is not None


async def _apply(conn: psycopg.AsyncConnection[tuple[object, ...]], migration: Migration) -> None:
    logger.info("applying migration %04d_%s", migration.version, migration.name)
    # Migration files ship with the package, never come from input (see db.queries.query).
    script: LiteralString = migration.path.read_text(encoding="utf-8")
    await conn.execute(script)
    await conn.execute(
        "INSERT INTO lg_deploy.schema_migrations (version, name) VALUES (%s, %s)",
        (migration.version, migration.name),
    )
