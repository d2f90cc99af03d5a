"""Named SQL queries, read once from the `.sql` files under `sql/queries/`."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import LiteralString

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_NAME_LINE = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_root() -> Path:
    """The `sql/` folder: inside the installed wheel, else the source checkout's top level."""
    for candidate in (_PACKAGE_DIR / "sql", _PACKAGE_DIR.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise FileNotFoundError("lg-deploy's sql/ folder is missing from this installation")


def parse_named_queries(text: str) -> dict[str, str]:
    """Split a file of `-- name: x` blocks into {name: sql}; duplicate names are an error."""
    queries: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        name = match.group("name")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[match.end() : end].strip()
    return queries


@cache
def _all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted((sql_root() / "queries").glob("*.sql")):
        for name, text in parse_named_queries(path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files")
            queries[name] = text
    return queries


def query(name: str) -> LiteralString:
    """The SQL text of the named query (bound parameters only, never formatted)."""
    # The text comes from files shipped with the package, never from input, which is what
    # LiteralString stands for (mypy reads it as str).
    return _all_queries()[name]


def query_names() -> list[str]:
    """Every query name, sorted."""
    return sorted(_all_queries())
