"""The `lg-deploy` command line: serve, worker, migrate, and commands for executions.

Server-side modules (uvicorn, the runtime, LangGraph, psycopg) are imported by the commands
that use them, so the client commands and --help start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lg_deploy.client import ApiCallError
from lg_deploy.client_commands import Handler, add_client_commands
from lg_deploy.cron_commands import add_cron_commands
from lg_deploy.errors import ConfigError, GraphLoadError
from lg_deploy.exits import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SECOND_SIGNAL,
    EXIT_SERVER_ERROR,
    EXIT_STATUS_HELP,
    EXIT_UNREACHABLE,
)
from lg_deploy.logs import configure_logging
from lg_deploy.settings import Settings, apply_config_file, load_settings

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("lg_deploy.cli")

# Options that set a setting of the same name, over its LG_DEPLOY_* variable.
SETTING_OPTIONS = ("host", "port", "config")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lg-deploy",
        description="Durable LangGraph executions on PostgreSQL. Settings: LG_DEPLOY_* variables.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the HTTP API and workers")
    serve.add_argument("--host", help="address to listen on (over LG_DEPLOY_HOST; 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (over LG_DEPLOY_PORT; 8000)")
    _add_config_option(serve)
    serve.set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="run workers only, until SIGTERM or SIGINT")
    _add_config_option(worker)
    worker.set_defaults(handler=_worker)
    commands.add_parser("migrate", help="apply pending migrations").set_defaults(handler=_migrate)
    roles = commands.add_parser("roles", help="create and grant the database roles (sql/roles.sql)")
    roles.set_defaults(handler=_roles)
    prune = commands.add_parser(
        "prune", help="delete finished executions older than a duration (counts unless --yes)"
    )
    prune.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m")
    prune.add_argument("--yes", action="store_true", help="delete; without it, only count")
    prune.add_argument("--batch-size", type=int, help="rows deleted per statement")
    prune.set_defaults(handler=_prune)
    add_client_commands(commands)
    add_cron_commands(commands.add_parser("cron", help="create, list, change and delete crons"))
    return parser


def _add_config_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config", help="JSON settings file or langgraph.json (over LG_DEPLOY_CONFIG)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one lg-deploy command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    given = {name: vars(args).get(name) for name in SETTING_OPTIONS}
    options = {name: value for name, value in given.items() if value is not None}
    try:
        settings = load_settings(os.environ, options)
    except ConfigError as error:
        print(f"lg-deploy: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except (ConfigError, GraphLoadError) as error:
        print(f"lg-deploy: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except ApiCallError as error:
        print(f"lg-deploy: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE if error.status is None else EXIT_SERVER_ERROR


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    apply_config_file(settings)
    import uvicorn

    from lg_deploy.collector import prepare_collector
    from lg_deploy.http import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )
    server = _server_class()(config)
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with this
    # handler restored in its place, a clean shutdown exits 0 like `lg-deploy worker`.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_signal)
    prepare_collector(settings.worker_concurrency, settings.gc_objects_per_slot)
    server.run()
    return EXIT_OK if server.started else EXIT_FAILED


def _server_class() -> type[uvicorn.Server]:
    """uvicorn's Server, imported by `serve` alone, with lg-deploy's second-signal rule."""
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server; a second SIGTERM/SIGINT exits at once (leases recover the rest)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            """First signal: graceful shutdown; second: exit now."""
            if self.should_exit:
                logger.warning("second signal: exiting now; leases recover running executions")
                from lg_deploy.db.embedded import release_embedded

                release_embedded()  # os._exit skips the atexit handler that would do it
                os._exit(EXIT_SECOND_SIGNAL)
            super().handle_exit(sig, frame)

    return _Server


def _ignore_signal(signum: int, frame: Any) -> None:
    """A signal handler that does nothing (see _serve)."""


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from lg_deploy.db.migrations import migrate
    from lg_deploy.runtime import resolve_conninfo

    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        applied = asyncio.run(migrate(conninfo))
    print(f"applied migrations: {', '.join(map(str, applied)) or 'none pending'}")
    return EXIT_OK


def _roles(args: argparse.Namespace, settings: Settings) -> int:
    from lg_deploy.db.roles import apply_roles
    from lg_deploy.runtime import resolve_conninfo

    with contextlib.ExitStack() as stack:
        asyncio.run(apply_roles(resolve_conninfo(settings, stack)))
    print("roles applied: lg_deploy_producer, lg_deploy_reader, lg_deploy_service")
    return EXIT_OK


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from lg_deploy.retention import PRUNE_BATCH_SIZE, parse_duration
    from lg_deploy.runtime import resolve_conninfo

    batch_size = PRUNE_BATCH_SIZE if args.batch_size is None else args.batch_size
    try:
        older_than = parse_duration(args.older_than)
    except ValueError as error:
        print(f"lg-deploy: --older-than: {error}", file=sys.stderr)
        return EXIT_CONFIG
    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        return asyncio.run(_run_prune(conninfo, older_than, args.yes, batch_size))


async def _run_prune(conninfo: str, older_than: float, delete: bool, batch_size: int) -> int:
    from lg_deploy.db.pool import open_pool
    from lg_deploy.retention import count_prunable, prune

    pool = await open_pool(conninfo, max_size=2)
    try:
        count = await count_prunable(pool, older_than)
        if not delete:
            print(
                f"{count} finished executions are older than {older_than:.0f} s; --yes deletes them"
            )
            return EXIT_OK
        deleted = await prune(pool, older_than, batch_size=batch_size)
        print(f"deleted {deleted} finished executions and their history")
        return EXIT_OK
    finally:
        await pool.close()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    apply_config_file(settings)
    asyncio.run(_run_worker(settings))
    return EXIT_OK


async def _run_worker(settings: Settings) -> None:
    from lg_deploy.collector import prepare_collector
    from lg_deploy.runtime import open_runtime

    stop = _stop_on_signals()
    prepare_collector(settings.worker_concurrency, settings.gc_objects_per_slot)
    async with open_runtime(settings, finish_notices=False):
        logger.info("worker running; SIGTERM or SIGINT stops it")
        await stop.wait()
        logger.info("stopping: no new claims, %.0f s grace", settings.shutdown_grace_seconds)


def _stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM/SIGINT; a second one exits at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            logger.warning("second signal: exiting now; leases recover running executions")
            from lg_deploy.db.embedded import release_embedded

            release_embedded()  # os._exit skips the atexit handler that would do it
            os._exit(EXIT_SECOND_SIGNAL)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    return stop
