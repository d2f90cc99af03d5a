"""The `lg-deploy` command line: serve, worker, migrate, and commands for executions."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from lg_deploy.client import ApiCallError, Client
from lg_deploy.collector import prepare_collector
from lg_deploy.db.migrations import migrate
from lg_deploy.db.pool import open_pool
from lg_deploy.db.roles import apply_roles
from lg_deploy.errors import ConfigError, GraphLoadError
from lg_deploy.logs import configure_logging
from lg_deploy.retention import PRUNE_BATCH_SIZE, count_prunable, parse_duration, prune
from lg_deploy.runtime import open_runtime, resolve_conninfo
from lg_deploy.settings import Settings, load_settings

logger = logging.getLogger("lg_deploy.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NOT_FINAL = 3
EXIT_SECOND_SIGNAL = 130

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lg-deploy",
        description="Durable LangGraph executions on PostgreSQL. Settings: LG_DEPLOY_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the HTTP API and workers").set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="run workers only, until SIGTERM or SIGINT")
    worker.set_defaults(handler=_worker)
    commands.add_parser("migrate", help="apply pending migrations").set_defaults(handler=_migrate)
    roles = commands.add_parser("roles", help="create and grant the database roles (sql/roles.sql)")
    roles.set_defaults(handler=_roles)
    prune = commands.add_parser(
        "prune", help="delete finished executions older than a duration (counts unless --yes)"
    )
    prune.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m")
    prune.add_argument("--yes", action="store_true", help="delete; without it, only count")
    prune.add_argument("--batch-size", type=int, default=PRUNE_BATCH_SIZE)
    prune.set_defaults(handler=_prune)
    _add_client_commands(commands)
    return parser


def _add_client_commands(commands: Any) -> None:
    def client_command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        command.add_argument("--url", help="server URL (default: http://LG_DEPLOY_HOST:PORT)")
        command.set_defaults(handler=handler)
        return command

    submit = client_command("submit", "submit an execution and print it", _submit)
    submit.add_argument("graph_id")
    submit.add_argument("--input", default="{}", help="the input, a JSON object")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--wait", action="store_true", help="wait for the outcome")
    submit.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    get = client_command("get", "print one execution", _get)
    get.add_argument("execution_id")
    listing = client_command("list", "print executions, newest first", _list)
    listing.add_argument("--status", choices=["QUEUED", "RUNNING", "COMPLETED", "FAILED"])
    listing.add_argument("--graph", dest="graph_id")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor")
    wait = client_command("wait", "wait until an execution is final and print it", _wait)
    wait.add_argument("execution_id")
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    cancel = client_command(
        "cancel", "cancel an execution (QUEUED at once; RUNNING: its worker stops it)", _cancel
    )
    cancel.add_argument("execution_id")
    events = client_command("events", "print an execution's history", _events)
    events.add_argument("execution_id")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one lg-deploy command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
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
        return EXIT_FAILED


def _serve(args: argparse.Namespace, settings: Settings) -> int:
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
    server = _Server(config)
    # uvicorn re-raises the signal it caught once it has shut down gracefully; with this
    # handler restored in its place, a clean shutdown exits 0 like `lg-deploy worker`.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_signal)
    prepare_collector(settings.worker_concurrency, settings.gc_objects_per_slot)
    server.run()
    return EXIT_OK if server.started else EXIT_FAILED


class _Server(uvicorn.Server):
    """uvicorn's server, where a second SIGTERM/SIGINT exits at once (leases recover the rest)."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        """First signal: graceful shutdown; second: exit now."""
        if self.should_exit:
            logger.warning("second signal: exiting now; leases recover running executions")
            os._exit(EXIT_SECOND_SIGNAL)
        super().handle_exit(sig, frame)


def _ignore_signal(signum: int, frame: Any) -> None:
    """A signal handler that does nothing (see _serve)."""


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        applied = asyncio.run(migrate(conninfo))
    print(f"applied migrations: {', '.join(map(str, applied)) or 'none pending'}")
    return EXIT_OK


def _roles(args: argparse.Namespace, settings: Settings) -> int:
    with contextlib.ExitStack() as stack:
        asyncio.run(apply_roles(resolve_conninfo(settings, stack)))
    print("roles applied: lg_deploy_producer, lg_deploy_reader, lg_deploy_service")
    return EXIT_OK


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    try:
        older_than = parse_duration(args.older_than)
    except ValueError as error:
        print(f"lg-deploy: --older-than: {error}", file=sys.stderr)
        return EXIT_CONFIG
    with contextlib.ExitStack() as stack:
        conninfo = resolve_conninfo(settings, stack)
        return asyncio.run(_run_prune(conninfo, older_than, args.yes, args.batch_size))


async def _run_prune(conninfo: str, older_than: float, delete: bool, batch_size: int) -> int:
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
    asyncio.run(_run_worker(settings))
    return EXIT_OK


async def _run_worker(settings: Settings) -> None:
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
            os._exit(EXIT_SECOND_SIGNAL)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    return stop


def _every_interface(host: str) -> bool:
    """True for a bind address meaning every interface ("", 0.0.0.0, ::)."""
    try:
        return host == "" or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _client(args: argparse.Namespace, settings: Settings) -> Client:
    host = "127.0.0.1" if _every_interface(settings.host) else settings.host
    return Client(args.url or f"http://{host}:{settings.port}", api_key=settings.api_key)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _outcome(execution: dict[str, Any]) -> int:
    status = execution.get("status")
    if status == "COMPLETED":
        return EXIT_OK
    return EXIT_FAILED if status == "FAILED" else EXIT_NOT_FINAL


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    try:
        payload = json.loads(args.input)
    except ValueError as error:
        print(f"lg-deploy: --input is not JSON: {error}", file=sys.stderr)
        return EXIT_CONFIG
    client = _client(args, settings)
    body = {"graph_id": args.graph_id, "input": payload, "priority": args.priority}
    execution = client.call("POST", "/executions", body=body)
    if not args.wait:
        _print(execution)
        return EXIT_OK
    final = client.wait(execution["execution_id"], args.timeout)
    _print(final)
    return _outcome(final)


def _get(args: argparse.Namespace, settings: Settings) -> int:
    _print(_client(args, settings).call("GET", f"/executions/{args.execution_id}"))
    return EXIT_OK


def _list(args: argparse.Namespace, settings: Settings) -> int:
    query = {"status": args.status, "graph_id": args.graph_id, "limit": args.limit}
    query["cursor"] = args.cursor
    _print(_client(args, settings).call("GET", "/executions", query=query))
    return EXIT_OK


def _wait(args: argparse.Namespace, settings: Settings) -> int:
    final = _client(args, settings).wait(args.execution_id, args.timeout)
    _print(final)
    return _outcome(final)


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    path = f"/executions/{args.execution_id}/cancel"
    _print(_client(args, settings).call("POST", path))
    return EXIT_OK


def _events(args: argparse.Namespace, settings: Settings) -> int:
    _print(_client(args, settings).call("GET", f"/executions/{args.execution_id}/events"))
    return EXIT_OK
