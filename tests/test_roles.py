"""The database doors (sql/roles.sql, docs/security.md): the script, the producer, the reader.

Every door is tried as a login role that is a member of it, never as a superuser. Roles are
cluster-wide: the three group roles may exist from an earlier test database, and the login
roles made here get unique names and are dropped at teardown. Grants belong to one database,
so every test applies the script to its own. Also: test_roles_bad_rows.py,
test_roles_service.py, test_roles_processes.py (lg-deploy's processes as the service role).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import errors
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from lg_deploy.db.roles import apply_roles
from tests.support.roles import GROUPS, PRODUCER, READER, Logins, refused
from tests.support.sql import count_rows, history, insert_row

SqlConn = psycopg.Connection[Any]
DEFINER_SEARCH_PATH = ["search_path=pg_catalog, lg_deploy, pg_temp"]


def privileges(sql: SqlConn) -> list[tuple[Any, ...]]:
    """Every privilege the three groups hold here: on the schema, tables, columns, functions."""
    return sql.execute(
        "SELECT 'schema', grantee::regrole::text, '', '', privilege_type"
        " FROM pg_namespace, aclexplode(nspacl) WHERE nspname = 'lg_deploy'"
        " AND grantee::regrole::text = ANY(%(groups)s)"
        " UNION ALL SELECT 'table', grantee, table_name, '', privilege_type"
        " FROM information_schema.role_table_grants WHERE grantee = ANY(%(groups)s)"
        " UNION ALL SELECT 'column', grantee, table_name, column_name, privilege_type"
        " FROM information_schema.column_privileges WHERE grantee = ANY(%(groups)s)"
        " UNION ALL SELECT 'function', grantee, routine_name, '', privilege_type"
        " FROM information_schema.role_routine_grants WHERE grantee = ANY(%(groups)s)"
        " ORDER BY 1, 2, 3, 4, 5",
        {"groups": list(GROUPS)},
    ).fetchall()


@pytest.mark.req("SEC-ROLES")
async def test_roles_script_is_idempotent_and_converges_on_what_it_says(
    sql: SqlConn, roles: str
) -> None:
    """Re-running roles.sql changes nothing, and revokes privileges granted outside it."""
    before = privileges(sql)
    assert ("column", PRODUCER, "executions", "graph_id", "INSERT") in before
    assert ("column", PRODUCER, "executions", "status", "INSERT") not in before
    sql.execute("GRANT UPDATE, DELETE ON lg_deploy.executions TO lg_deploy_producer")
    sql.execute("GRANT INSERT ON lg_deploy.execution_events TO lg_deploy_service")
    sql.execute("GRANT CREATE ON SCHEMA lg_deploy TO lg_deploy_service")
    assert privileges(sql) != before
    await apply_roles(roles)
    await apply_roles(roles)
    assert privileges(sql) == before
    attributes = sql.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
        " FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
        (list(GROUPS),),
    ).fetchall()
    assert attributes == [(name, False, False, False, False, False) for name in sorted(GROUPS)]


@pytest.mark.req("SEC-ROLES")
def test_history_triggers_and_submit_run_as_owner_with_a_fixed_search_path(sql: SqlConn) -> None:
    """The triggers that write history, and submit(), are SECURITY DEFINER; no PUBLIC EXECUTE."""
    rows = sql.execute(
        "SELECT proname, prosecdef, proconfig, proacl::text[] FROM pg_proc"
        " WHERE pronamespace = 'lg_deploy'::regnamespace ORDER BY proname"
    ).fetchall()
    found = {name: (definer, config, acl) for name, definer, config, acl in rows}
    definers = ["executions_after_insert", "executions_after_update", "executions_guard_update"]
    for name in [*definers, "submit"]:
        assert found[name][:2] == (True, DEFINER_SEARCH_PATH), name
    assert found["executions_check_insert"][0] is False
    for name, (_definer, _config, acl) in found.items():
        assert acl is not None, f"{name} is executable by PUBLIC (default ACL)"
        assert not [item for item in acl if item.startswith("=")], f"{name}: {acl}"


@pytest.mark.req("SEC-ROLES")
def test_producer_inserts_and_gets_back_only_the_id(logins: Logins, sql: SqlConn) -> None:
    """A producer's INSERT ... RETURNING execution_id writes history and NOTIFY; nothing more."""
    producer = logins.connect(PRODUCER)
    sql.execute("LISTEN lg_deploy_queued")
    execution_id = insert_row(producer, priority=5, metadata=Jsonb({"from": "billing"}))
    assert history(sql, execution_id) == [(None, "QUEUED")]
    notes = list(sql.notifies(timeout=2.0, stop_after=1))
    assert [note.channel for note in notes] == ["lg_deploy_queued"]
    for statement in (
        "SELECT input FROM lg_deploy.executions",
        "SELECT output, error FROM lg_deploy.executions",
        "SELECT * FROM lg_deploy.executions",
        "SELECT * FROM lg_deploy.execution_events",
        "SELECT * FROM lg_deploy.queue_depth",
        "UPDATE lg_deploy.executions SET priority = 9",
        "UPDATE lg_deploy.executions SET cancel_requested_at = now()",
        "DELETE FROM lg_deploy.executions",
        "TRUNCATE lg_deploy.executions",
        "INSERT INTO lg_deploy.execution_events (execution_id, to_status, attempt)"
        " SELECT execution_id, 'COMPLETED', 1 FROM lg_deploy.executions",
        "CREATE TABLE lg_deploy.mine (x int)",
    ):
        assert "permission denied" in refused(producer, statement)
    row = sql.execute(
        "SELECT status, priority, metadata FROM lg_deploy.executions WHERE execution_id = %s",
        (execution_id,),
    ).fetchone()
    assert row == ("QUEUED", 5, {"from": "billing"})
    assert history(sql, execution_id) == [(None, "QUEUED")]


LIFECYCLE_VALUES: dict[str, Any] = {
    "status": "COMPLETED",
    "output": Jsonb({"forged": True}),
    "error": "forged",
    "attempts": 1,
    "worker_id": "forged:1:abc",
    "lease_expires_at": datetime(2030, 1, 1, tzinfo=UTC),
    "started_at": datetime(2030, 1, 1, tzinfo=UTC),
    "finished_at": datetime(2030, 1, 1, tzinfo=UTC),
    "cancel_requested_at": datetime(2030, 1, 1, tzinfo=UTC),
    "created_at": datetime(2000, 1, 1, tzinfo=UTC),
    "updated_at": datetime(2000, 1, 1, tzinfo=UTC),
    "execution_id": "00000000-0000-4000-8000-000000000001",
}


@pytest.mark.req("SEC-ROLES")
@pytest.mark.parametrize("column", sorted(LIFECYCLE_VALUES))
def test_producer_cannot_set_lifecycle_columns(logins: Logins, sql: SqlConn, column: str) -> None:
    """A producer's INSERT naming a column the lifecycle owns is refused; no row is written."""
    producer = logins.connect(PRODUCER)
    with pytest.raises(errors.InsufficientPrivilege):
        insert_row(producer, **{column: LIFECYCLE_VALUES[column]})
    assert count_rows(sql) == 0
    assert insert_row(producer)  # the same connection still submits


@pytest.mark.req("SEC-ROLES", "DUR-IDEMPOTENCY")
def test_producer_submits_through_submit_with_idempotent_replay(
    logins: Logins, sql: SqlConn
) -> None:
    """submit() returns the id, replays a key with the same payload, refuses it with another."""
    producer = logins.connect(PRODUCER)

    def submit(arguments: LiteralString, *params: Any) -> str:
        statement = pgsql.SQL("SELECT lg_deploy.submit({})").format(pgsql.SQL(arguments))
        row = producer.execute(statement, params).fetchone()
        assert row is not None
        return str(row[0])

    plain = submit("%s, %s", "echo", Jsonb({"n": 1}))
    keyed = submit(
        "%s, %s, priority => 7, max_attempts => 2, timeout_seconds => 30, idempotency_key => %s,"
        " metadata => %s, run_at => now() + interval '1 hour'",
        "echo",
        Jsonb({"order": 7}),
        "order-7",
        Jsonb({"team": "billing"}),
    )
    assert submit("%s, %s, idempotency_key => %s", "echo", Jsonb({"order": 7}), "order-7") == keyed
    with pytest.raises(errors.UniqueViolation, match="order-7"):
        submit("%s, %s, idempotency_key => %s", "echo", Jsonb({"order": 8}), "order-7")
    with pytest.raises(errors.CheckViolation) as caught:
        submit("%s, %s", "echo", Jsonb([1]))
    assert caught.value.diag.constraint_name == "executions_input_is_object"
    rows = sql.execute(
        "SELECT execution_id::text, status, priority, max_attempts, timeout_seconds, metadata,"
        " run_at > now() + interval '59 minutes'"
        " FROM lg_deploy.executions ORDER BY priority"
    ).fetchall()
    assert rows == [
        (plain, "QUEUED", 0, 3, None, {}, False),
        (keyed, "QUEUED", 7, 2, 30.0, {"team": "billing"}, True),
    ]
    assert history(sql, keyed) == [(None, "QUEUED")]
    reader = logins.connect(READER)
    assert "permission denied" in refused(reader, "SELECT lg_deploy.submit('echo', '{}')")


READER_TABLES: list[LiteralString] = [
    "executions",
    "execution_events",
    "execution_transitions",
    "schema_migrations",
    "queue_depth",
    "recent_failures",
    "slowest_executions",
    "assistants",
    "assistant_versions",
]


@pytest.mark.req("SEC-ROLES")
def test_reader_reads_every_table_and_view_and_changes_nothing(
    logins: Logins, sql: SqlConn
) -> None:
    """The reader SELECTs all tables and views; INSERT, UPDATE, DELETE, DDL are refused."""
    execution_id = insert_row(sql)
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'FAILED', error = 'cancelled'"
        " WHERE execution_id = %s",
        (execution_id,),
    )
    reader = logins.connect(READER)
    counts = {table: count_rows(reader, table) for table in READER_TABLES}
    assert counts["executions"] == 1
    assert counts["execution_events"] == 2
    assert counts["execution_transitions"] == 6
    assert counts["schema_migrations"] >= 5
    assert counts["recent_failures"] == 1
    for statement in (
        "INSERT INTO lg_deploy.executions (graph_id, input) VALUES ('echo', '{}')",
        "UPDATE lg_deploy.executions SET priority = 1",
        "UPDATE lg_deploy.executions SET cancel_requested_at = now()",
        "DELETE FROM lg_deploy.executions",
        "DELETE FROM lg_deploy.execution_events",
        "TRUNCATE lg_deploy.execution_events",
        "INSERT INTO lg_deploy.execution_transitions VALUES ('FAILED', 'QUEUED', 'retry')",
        "DELETE FROM lg_deploy.schema_migrations",
        "CREATE TABLE lg_deploy.notes (x int)",
        "CREATE VIEW lg_deploy.mine AS SELECT 1",
    ):
        assert "permission denied" in refused(reader, statement)
    assert count_rows(sql) == 1
    assert count_rows(sql, "execution_events") == 2


def setting(url: str, name: LiteralString) -> str:
    """The value of `name` in a new session opened with `url`."""
    with psycopg.connect(url) as conn:
        row = conn.execute(pgsql.SQL("SHOW {}").format(pgsql.Identifier(name))).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.req("SEC-ROLES")
def test_reader_timeouts_hold_for_the_role_and_for_members_given_them(
    logins: Logins, sql: SqlConn
) -> None:
    """30 s / 60 s hold logging in as lg_deploy_reader; members need ALTER ROLE, as documented."""
    member = logins.create(READER)
    assert setting(logins.url(member), "statement_timeout") != "30s"  # not inherited
    sql.execute(
        pgsql.SQL("ALTER ROLE {} SET statement_timeout = '30s'").format(pgsql.Identifier(member))
    )
    sql.execute(
        pgsql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = '60s'").format(
            pgsql.Identifier(member)
        )
    )
    assert setting(logins.url(member), "statement_timeout") == "30s"
    assert setting(logins.url(member), "idle_in_transaction_session_timeout") == "1min"
    sql.execute("ALTER ROLE lg_deploy_reader LOGIN")  # as an operator may, with a password
    try:
        as_role = logins.url(READER)
        assert setting(as_role, "statement_timeout") == "30s"
        assert setting(as_role, "idle_in_transaction_session_timeout") == "1min"
        with psycopg.connect(as_role, autocommit=True) as conn:
            assert count_rows(conn) == 0
            assert "permission denied" in refused(conn, "DELETE FROM lg_deploy.executions")
    finally:
        sql.execute("ALTER ROLE lg_deploy_reader NOLOGIN")
