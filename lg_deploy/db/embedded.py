"""The embedded PostgreSQL (pip package pgserver) used when no database URL is configured."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from lg_deploy.errors import ConfigError

logger = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) a private PostgreSQL under `data_dir`; returns (conninfo, server handle).

    The server keeps running while the handle lives and stops when the last process using it
    exits; its data stays in `data_dir/pgdata`, so executions survive restarts.
    """
    try:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR, platformdirs warns and falls back to /tmp: harmless here.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as error:
        raise ConfigError(
            "LG_DEPLOY_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install 'lg-deploy[embedded]' (CPython 3.11 or 3.12), or set a database URL"
        ) from error
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]  # untyped re-export
        pgdata, cleanup_mode="stop"
    )
    conninfo = str(server.get_uri())
    logger.info("embedded PostgreSQL in %s; psql %s", pgdata, conninfo)
    return conninfo, server
