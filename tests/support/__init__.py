"""Shared test scaffolding, one module per job; test modules import from here, never each other.

factories: ExecutionState builders and lifecycle moves. database: the PostgreSQL server and
migrated template behind conftest's fixtures. waiting: bounded polling. backends: store and
queue pairs for in-process workers. graphs: graph ids, fake runners, the real registry.
processes: `lg-deploy` child processes and their logs. servers: `lg-deploy serve` processes,
ports and HTTP helpers. sql: plain-SQL helpers (rows as psql would insert them, read back).
roles: the database roles of sql/roles.sql and login roles. The modules with fixtures are
plugins named in conftest.py's pytest_plugins.
"""

from __future__ import annotations

import pkgutil

import pytest

# Asserts in these helpers report their operands like those in test modules and plugins do.
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))
