"""The client commands (submit, get, list, wait, cancel, events): HTTP calls and printing.

They import nothing of the server side (LangGraph, uvicorn, psycopg), so each starts fast.
An execution's JSON goes to stdout for scripts; its traceback, when it has one, to stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Callable
from typing import Any

from lg_deploy.client import Client
from lg_deploy.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_NOT_FINAL, EXIT_OK
from lg_deploy.settings import Settings

STATUSES = ("QUEUED", "RUNNING", "COMPLETED", "FAILED")

Handler = Callable[[argparse.Namespace, Settings], int]


def add_client_commands(commands: Any) -> None:
    """Add the client subcommands to `commands` (an argparse subparsers action)."""

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
    listing.add_argument("--status", choices=STATUSES)
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


def _every_interface(host: str) -> bool:
    """True for a bind address meaning every interface ("", 0.0.0.0, ::)."""
    try:
        return host == "" or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def client_for(args: argparse.Namespace, settings: Settings) -> Client:
    """The client of the server the command names (--url, or the settings' host and port)."""
    host = "127.0.0.1" if _every_interface(settings.host) else settings.host
    return Client(args.url or f"http://{host}:{settings.port}", api_key=settings.api_key)


def print_json(value: Any) -> None:
    """A JSON answer on stdout, indented."""
    print(json.dumps(value, indent=2))


def _print_execution(execution: Any) -> None:
    """The execution as JSON on stdout; its traceback, if it has one, as text on stderr."""
    print_json(execution)
    traceback = execution.get("traceback") if isinstance(execution, dict) else None
    if isinstance(traceback, str) and traceback.strip():
        print(traceback.rstrip("\n"), file=sys.stderr)


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
    client = client_for(args, settings)
    body = {"graph_id": args.graph_id, "input": payload, "priority": args.priority}
    execution = client.call("POST", "/executions", body=body)
    if not args.wait:
        print_json(execution)
        return EXIT_OK
    final = client.wait(execution["execution_id"], args.timeout)
    _print_execution(final)
    return _outcome(final)


def _get(args: argparse.Namespace, settings: Settings) -> int:
    _print_execution(client_for(args, settings).call("GET", f"/executions/{args.execution_id}"))
    return EXIT_OK


def _list(args: argparse.Namespace, settings: Settings) -> int:
    query = {"status": args.status, "graph_id": args.graph_id, "limit": args.limit}
    query["cursor"] = args.cursor
    print_json(client_for(args, settings).call("GET", "/executions", query=query))
    return EXIT_OK


def _wait(args: argparse.Namespace, settings: Settings) -> int:
    final = client_for(args, settings).wait(args.execution_id, args.timeout)
    _print_execution(final)
    return _outcome(final)


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    path = f"/executions/{args.execution_id}/cancel"
    print_json(client_for(args, settings).call("POST", path))
    return EXIT_OK


def _events(args: argparse.Namespace, settings: Settings) -> int:
    print_json(client_for(args, settings).call("GET", f"/executions/{args.execution_id}/events"))
    return EXIT_OK
