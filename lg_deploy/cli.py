"""The `lg-deploy` command line: migrate, worker (serve and the execution commands come later)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from lg_deploy.db.migrations import migrate
from lg_deploy.errors import ConfigError, GraphLoadError
from lg_deploy.logs import configure_logging
from lg_deploy.runtime import open_runtime, resolve_conninfo
from lg_deploy.settings import Settings, load_settings

logger = logging.getLogger("lg_deploy.cli")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_SECOND_SIGNAL = 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lg-deploy",
        description="Durable LangGraph executions on PostgreSQL. Settings: LG_DEPLOY_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate_cmd = commands.add_parser("migrate", help="apply pending migrations and exit")
    migrate_cmd.set_defaults(handler=_migrate)
    worker_cmd = commands.add_parser("worker", help="run workers until SIGTERM or SIGINT")
    worker_cmd.set_defaults(handler=_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one lg-deploy command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print(f"lg-deploy: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[Settings], int] = args.handler
    try:
        return handler(settings)
    except (ConfigError, GraphLoadError) as error:
        print(f"lg-deploy: {error}", file=sys.stderr)
        return EXIT_CONFIG


def _migrate(settings: Settings) -> int:
    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        applied = asyncio.run(migrate(conninfo))
    print(f"applied migrations: {', '.join(map(str, applied)) or 'none pending'}")
    return EXIT_OK


def _worker(settings: Settings) -> int:
    asyncio.run(_run_worker(settings))
    return EXIT_OK


async def _run_worker(settings: Settings) -> None:
    stop = _stop_on_signals()
    async with open_runtime(settings):
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
            os._exit(EXIT_SECOND_SIGNAL)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    return stop
