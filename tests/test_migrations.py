"""Numbered migrations (applied once, in order, under an advisory lock) and named-query files."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from lg_deploy.db.migrations import available_migrations, migrate
from lg_deploy.db.queries import parse_named_queries, query, query_names, sql_root

Conn = psycopg.Connection[Any]
REPO_ROOT = Path(__file__).resolve().parents[1]
MIGRATE_TIMEOUT_SECONDS = 30.0
WHEEL_BUILD_TIMEOUT_SECONDS = 60
# hatchling comes with the test extras, so the build needs no download.
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w"]
QUERY_CALL = re.compile(r"""\bquery\(\s*["']([a-z_][a-z0-9_]*)["']\s*\)""")


@pytest.fixture
def empty_db(sql: Conn, db_url: str) -> Iterator[str]:
    """Conninfo of a brand-new empty database on the test server, dropped afterwards."""
    name = f"lgd_mig_{uuid.uuid4().hex[:12]}"
    sql.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        yield make_conninfo(db_url, dbname=name)
    finally:
        sql.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(name)))


def ledger(conninfo: str) -> list[tuple[int, str]]:
    """(version, name) rows of lg_deploy.schema_migrations, in version order."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT version, name FROM lg_deploy.schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(version), str(name)) for version, name in rows]


def scalar(conninfo: str, statement: str) -> Any:
    """The single value `statement` returns."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(statement).fetchone()
    assert row is not None
    return row[0]


def write_folder(folder: Path, files: dict[str, str]) -> Path:
    """A migrations folder holding `files` (name -> SQL)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


async def run_migrate(conninfo: str, folder: Path | None = None) -> list[int]:
    """migrate(), bounded so that a stuck advisory lock fails the test instead of hanging it."""
    return await asyncio.wait_for(migrate(conninfo, folder), MIGRATE_TIMEOUT_SECONDS)


@pytest.mark.req("CARD-MIGRATIONS")
async def test_migrate_applies_every_version_once_then_nothing(empty_db: str) -> None:
    """An empty database gets [1, ...] recorded in schema_migrations; a second run is a no-op."""
    shipped = available_migrations()
    versions = [m.version for m in shipped]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert await run_migrate(empty_db) == versions
    recorded = ledger(empty_db)
    assert recorded == [(m.version, m.name) for m in shipped]
    assert scalar(empty_db, "SELECT to_regclass('lg_deploy.executions') IS NOT NULL") is True
    applied_at = scalar(empty_db, "SELECT array_agg(applied_at) FROM lg_deploy.schema_migrations")
    tables = scalar(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'lg_deploy'")
    assert await run_migrate(empty_db) == []
    assert ledger(empty_db) == recorded
    assert scalar(empty_db, "SELECT array_agg(applied_at) FROM lg_deploy.schema_migrations") == (
        applied_at
    )
    assert scalar(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'lg_deploy'") == (
        tables
    )


@pytest.mark.req("CARD-MIGRATIONS")
async def test_the_migrated_test_database_is_up_to_date(db_url: str) -> None:
    """The fixture database already holds every shipped version, so migrate() applies nothing."""
    versions = [m.version for m in available_migrations()]
    assert [version for version, _ in ledger(db_url)] == versions
    assert await run_migrate(db_url) == []


@pytest.mark.req("CARD-MIGRATIONS")
async def test_concurrent_migrations_apply_each_version_exactly_once(empty_db: str) -> None:
    """Four migrate() calls at once on an empty database succeed and apply each version once."""
    results = await asyncio.gather(*(run_migrate(empty_db) for _ in range(4)))
    versions = [m.version for m in available_migrations()]
    assert sorted(v for applied in results for v in applied) == versions
    assert [version for version, _ in ledger(empty_db)] == versions


@pytest.mark.req("CARD-MIGRATIONS")
async def test_failing_migration_rolls_back_and_stays_unrecorded(
    empty_db: str, tmp_path: Path
) -> None:
    """A migration that fails midway leaves no trace and is not recorded; earlier ones stay."""
    folder = write_folder(
        tmp_path / "migrations",
        {
            "0001_ok.sql": "CREATE TABLE public.mig_ok (id int PRIMARY KEY);"
            " INSERT INTO public.mig_ok VALUES (1);",
            "0002_broken.sql": "CREATE TABLE public.mig_partial (id int);"
            " INSERT INTO public.mig_ok VALUES (2);"
            " SELECT 1 / 0;",
        },
    )
    with pytest.raises(psycopg.errors.DivisionByZero):
        await run_migrate(empty_db, folder)
    assert ledger(empty_db) == [(1, "ok")]
    assert scalar(empty_db, "SELECT to_regclass('public.mig_partial') IS NULL") is True
    assert scalar(empty_db, "SELECT array_agg(id ORDER BY id) FROM public.mig_ok") == [1]
    (folder / "0002_broken.sql").write_text("CREATE TABLE public.mig_partial (id int);")
    assert await run_migrate(empty_db, folder) == [2]
    assert ledger(empty_db) == [(1, "ok"), (2, "broken")]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_ok.sql": "", "1_short.sql": ""}, "'1_short.sql' is not named NNNN_name.sql"),
        ({"0001_Upper.sql": ""}, "'0001_Upper.sql' is not named NNNN_name.sql"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "two migrations have version 1"),
    ],
)
@pytest.mark.req("CARD-MIGRATIONS")
async def test_bad_migration_folders_are_refused_readably(
    tmp_path: Path, empty_db: str, files: dict[str, str], message: str
) -> None:
    """A misnamed file or a duplicate version is a ValueError naming it, raised before any SQL."""
    folder = write_folder(tmp_path / "migrations", files)
    with pytest.raises(ValueError, match=re.escape(message)):
        available_migrations(folder)
    with pytest.raises(ValueError, match=re.escape(message)):
        await run_migrate(empty_db, folder)
    assert scalar(empty_db, "SELECT to_regnamespace('lg_deploy') IS NULL") is True


@pytest.mark.req("CARD-QUERIES")
def test_parse_named_queries_splits_blocks() -> None:
    """Each `-- name: x` line starts a block that runs to the next one; text before is ignored."""
    text = (
        "-- a file comment\n"
        "-- name: first_one\n-- Describe it.\nSELECT 1;\n\n"
        "-- name: second\nSELECT %(x)s\nFROM t;\n"
    )
    parsed = parse_named_queries(text)
    assert list(parsed) == ["first_one", "second"]
    assert parsed["first_one"] == "-- Describe it.\nSELECT 1;"
    assert parsed["second"] == "SELECT %(x)s\nFROM t;"


@pytest.mark.req("CARD-QUERIES")
def test_parse_named_queries_rejects_duplicate_names() -> None:
    """A name defined twice in one file is an error that names it."""
    with pytest.raises(ValueError, match="'twice'"):
        parse_named_queries("-- name: twice\nSELECT 1;\n-- name: twice\nSELECT 2;\n")


@pytest.mark.req("CARD-QUERIES")
def test_every_query_used_in_the_source_is_defined() -> None:
    """Each query("name") call under lg_deploy/ names a query that the .sql files define."""
    used = {
        name
        for path in (REPO_ROOT / "lg_deploy").rglob("*.py")
        for name in QUERY_CALL.findall(path.read_text(encoding="utf-8"))
    }
    assert {"claim_executions", "insert_execution"} <= used
    assert used - set(query_names()) == set()


@pytest.mark.req("CARD-QUERIES")
def test_query_text_is_loaded_once() -> None:
    """query() returns the very same string object on every call: the files are read once."""
    first = query("get_execution")
    assert first is query("get_execution")
    assert "lg_deploy.executions" in first


@pytest.mark.req("CARD-MIGRATIONS", "CARD-QUERIES")
def test_packaging_maps_sql_into_the_package() -> None:
    """pyproject force-includes sql/ as lg_deploy/sql, and sql_root() finds the shipped files."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    force_include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_include.get("sql") == "lg_deploy/sql"
    root = sql_root()
    assert (root / "migrations" / "0001_executions.sql").is_file()
    assert (root / "queries" / "executions.sql").is_file()


@pytest.mark.req("CARD-MIGRATIONS")
def test_the_built_wheel_ships_every_sql_file(tmp_path: Path) -> None:
    """A wheel built from the checkout holds every file of sql/ under lg_deploy/sql/."""
    built = subprocess.run(
        [*PIP_WHEEL, str(tmp_path), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=WHEEL_BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("lg_deploy-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"lg_deploy/sql/{path.relative_to(REPO_ROOT / 'sql').as_posix()}"
        for path in (REPO_ROOT / "sql").rglob("*.sql")
    }
    assert "lg_deploy/sql/migrations/0001_executions.sql" in expected
    assert expected <= shipped
