"""The service door (lg_deploy_service) in SQL, and the owner who migrates and grants.

lg-deploy's own processes running as the service role: test_roles_processes.py.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from lg_deploy.db.roles import apply_roles
from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.roles import PRODUCER, SERVICE, Logins, refused
from tests.support.sql import count_rows, history, insert_row

SqlConn = psycopg.Connection[Any]


@pytest.mark.req("SEC-ROLES")
def test_service_runs_the_lifecycle_but_cannot_forge_history_or_change_the_schema(
    logins: Logins, sql: SqlConn
) -> None:
    """The service updates and deletes executions (events cascade) but no history and no DDL."""
    service = logins.connect(SERVICE)
    execution_id = insert_row(service, request_id="req-1")
    service.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1, worker_id = 'w',"
        " lease_expires_at = now() + interval '10 seconds' WHERE execution_id = %s",
        (execution_id,),
    )
    service.execute(
        "UPDATE lg_deploy.executions SET status = 'COMPLETED', output = '{}'"
        " WHERE execution_id = %s",
        (execution_id,),
    )
    assert history(service, execution_id) == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "COMPLETED"),
    ]
    for statement in (
        "UPDATE lg_deploy.executions SET input = '{}'",
        "UPDATE lg_deploy.executions SET graph_id = 'other'",
        "INSERT INTO lg_deploy.execution_events (execution_id, to_status, attempt)"
        " SELECT execution_id, 'FAILED', 1 FROM lg_deploy.executions",
        "UPDATE lg_deploy.execution_events SET error = 'rewritten'",
        "DELETE FROM lg_deploy.execution_events",
        "TRUNCATE lg_deploy.executions",
        "CREATE TABLE lg_deploy.mine (x int)",
        "CREATE TABLE IF NOT EXISTS lg_deploy.executions (x int)",
        "CREATE FUNCTION lg_deploy.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "UPDATE lg_deploy.execution_transitions SET to_status = 'QUEUED'",
    ):
        assert "permission denied" in refused(service, statement)
    for statement in (
        "DROP TABLE lg_deploy.executions",
        "ALTER TABLE lg_deploy.executions DROP CONSTRAINT executions_priority_in_range",
        "ALTER TABLE lg_deploy.executions DISABLE TRIGGER USER",
        "ALTER FUNCTION lg_deploy.executions_guard_update() SECURITY INVOKER",
    ):
        assert "must be owner" in refused(service, statement)
    deleted = service.execute(
        "DELETE FROM lg_deploy.executions WHERE status IN ('COMPLETED', 'FAILED')"
    ).rowcount
    assert deleted == 1
    assert count_rows(sql, "execution_events") == 0  # the cascade ran for the service


@pytest.mark.req("SEC-ROLES", "CLI-MIGRATE")
def test_a_non_superuser_owner_migrates_and_grants_once_the_roles_exist(
    logins: Logins, sql: SqlConn, worker_env: dict[str, str]
) -> None:
    """An owner with no CREATEROLE runs `lg-deploy migrate` and roles.sql; triggers run as it."""
    owner = logins.create()
    dbname = f"lgd_owned_{secrets.token_hex(5)}"
    sql.execute(
        pgsql.SQL("CREATE DATABASE {} OWNER {}").format(
            pgsql.Identifier(dbname), pgsql.Identifier(owner)
        )
    )
    try:
        owner_url = logins.url(owner, dbname)
        migrated = subprocess.run(
            [*LG_DEPLOY_COMMAND, "migrate"],
            env={**worker_env, "LG_DEPLOY_DATABASE_URL": owner_url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrated.returncode == 0, migrated.stderr
        asyncio.run(apply_roles(owner_url))
        producer = logins.create(PRODUCER)
        with psycopg.connect(logins.url(producer, dbname), autocommit=True) as conn:
            execution_id = insert_row(conn)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            assert history(conn, execution_id) == [(None, "QUEUED")]
            row = conn.execute(
                "SELECT p.proowner::regrole::text, r.rolsuper FROM pg_proc p"
                " JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = 'executions_after_insert'"
            ).fetchone()
        assert row == (owner, False)
    finally:
        sql.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(dbname)))
