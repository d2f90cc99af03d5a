"""The database roles for tests: sql/roles.sql's group names, login roles, `roles`/`logins`.

Fixtures of the test_roles*.py modules: `roles` (sql/roles.sql applied) and `logins`.
A plugin named in conftest.py's pytest_plugins (fixtures imported into a test module trip ruff
F811). Roles are cluster-wide: the login roles made here get unique names and are dropped.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg import sql as pgsql
from psycopg.abc import Params, Query
from psycopg.conninfo import make_conninfo

from lg_deploy.db.roles import apply_roles

SqlConn = psycopg.Connection[Any]
PRODUCER = "lg_deploy_producer"
READER = "lg_deploy_reader"
SERVICE = "lg_deploy_service"
GROUPS = (PRODUCER, READER, SERVICE)


def refused(conn: SqlConn, statement: Query, params: Params | None = None) -> str:
    """Run `statement`, expecting "permission denied"; the message."""
    with pytest.raises(errors.InsufficientPrivilege) as caught:
        conn.execute(statement, params)
    return str(caught.value)


@dataclass
class Logins:
    """Makes login roles with unique names in groups; drops them (and closes their connections)."""

    sql: SqlConn
    db_url: str
    names: list[str] = field(default_factory=list)
    conns: list[SqlConn] = field(default_factory=list)

    def create(self, *groups: str) -> str:
        """A new login role, `CREATE ROLE name LOGIN IN ROLE groups` as the docs say; its name."""
        name = f"lgd_test_{secrets.token_hex(5)}"
        statement = pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(name))
        if groups:
            members_of = pgsql.SQL(", ").join(map(pgsql.Identifier, groups))
            statement = pgsql.SQL("{} IN ROLE {}").format(statement, members_of)
        self.sql.execute(statement)
        self.names.append(name)
        return name

    def url(self, name: str, dbname: str | None = None) -> str:
        """Conninfo for `name` to the test database (or `dbname`) on the test server."""
        return make_conninfo(self.db_url, user=name, **({"dbname": dbname} if dbname else {}))

    def connect(self, *groups: str) -> SqlConn:
        """An autocommit connection as a new login role in `groups`, like psql would open."""
        conn = psycopg.connect(self.url(self.create(*groups)), autocommit=True)
        self.conns.append(conn)
        return conn

    def drop_all(self) -> None:
        """Close the connections and drop every login role made here."""
        for conn in self.conns:
            conn.close()
        for name in self.names:
            self.sql.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(name)))
            self.sql.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(name)))


@pytest.fixture
async def roles(db_url: str) -> str:
    """The test database with sql/roles.sql applied; its URL."""
    await apply_roles(db_url)
    return db_url


@pytest.fixture
def logins(roles: str, sql: SqlConn) -> Iterator[Logins]:
    """Login roles on the test database, with the roles applied; dropped at teardown."""
    made = Logins(sql, roles)
    try:
        yield made
    finally:
        made.drop_all()
