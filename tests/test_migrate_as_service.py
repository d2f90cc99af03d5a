"""Migrating on start as the service role: nothing pending runs no DDL; pending ones are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lg_deploy.db.migrations import MigrationRefused, available_migrations, migrate
from tests.support.roles import SERVICE, Logins

EXTRA_MIGRATION = "CREATE TABLE lg_deploy.extra_for_test (x integer);\n"


@pytest.mark.req("SEC-SERVICE-START")
async def test_the_service_role_may_migrate_on_start_when_nothing_is_pending(
    logins: Logins,
) -> None:
    """As lg_deploy_service on a current database, migrate() reads the ledger and applies none."""
    assert await migrate(logins.url(logins.create(SERVICE))) == []


@pytest.mark.req("SEC-SERVICE-START")
async def test_a_pending_migration_the_service_may_not_apply_is_refused_readably(
    logins: Logins, tmp_path: Path
) -> None:
    """One more migration than applied: MigrationRefused says to run migrate as the owner."""
    for migration in available_migrations():
        shutil.copy(migration.path, tmp_path / migration.path.name)
    (tmp_path / "9999_extra_for_test.sql").write_text(EXTRA_MIGRATION)
    with pytest.raises(MigrationRefused, match="run `lg-deploy migrate` as the schema owner"):
        await migrate(logins.url(logins.create(SERVICE)), tmp_path)
    assert await migrate(logins.db_url, tmp_path) == [9999]  # the owner may
