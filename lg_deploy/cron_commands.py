"""`lg-deploy cron ...`: crons through the server's cron routes (the LangGraph API's)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lg_deploy.client_commands import client_for, print_json
from lg_deploy.exits import EXIT_CONFIG, EXIT_OK
from lg_deploy.settings import Settings


def add_cron_commands(cron: argparse.ArgumentParser) -> None:
    """Add create, list, get, enable, disable and delete under `lg-deploy cron`."""
    actions = cron.add_subparsers(dest="cron_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        command.add_argument("--url", help="server URL (default: http://LG_DEPLOY_HOST:PORT)")
        command.set_defaults(handler=handler)
        return command

    create = action("create", "schedule a graph and print the cron", _create)
    create.add_argument("graph_id", help="the graph (or assistant id) each tick runs")
    create.add_argument("--schedule", required=True, help='e.g. "*/5 * * * *" (6 fields: seconds)')
    create.add_argument("--timezone", help="IANA time zone (default UTC)")
    create.add_argument("--input", default="{}", help="the input, a JSON object")
    create.add_argument("--thread", help="run each tick on this thread")
    create.add_argument("--end-time", help="ISO time after which it stops")
    listing = action("list", "print the crons, newest first", _list)
    listing.add_argument("--graph", dest="graph_id")
    listing.add_argument("--limit", type=int, default=100)
    for name, help_text, handler in (
        ("get", "print one cron", _get),
        ("enable", "let a cron tick again", _enable),
        ("disable", "stop a cron ticking (kept)", _disable),
        ("delete", "delete a cron (its executions stay)", _delete),
    ):
        action(name, help_text, handler).add_argument("cron_id")


def _call(args: argparse.Namespace, settings: Settings, *request: Any, **options: Any) -> Any:
    return client_for(args, settings).call(*request, **options)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    try:
        payload = json.loads(args.input)
    except ValueError as error:
        print(f"lg-deploy: --input is not JSON: {error}", file=sys.stderr)
        return EXIT_CONFIG
    body = {"assistant_id": args.graph_id, "schedule": args.schedule, "input": payload}
    if args.timezone:
        body["timezone"] = args.timezone
    if args.end_time:
        body["end_time"] = args.end_time
    path = f"/threads/{args.thread}/runs/crons" if args.thread else "/runs/crons"
    print_json(_call(args, settings, "POST", path, body=body))
    return EXIT_OK


def _list(args: argparse.Namespace, settings: Settings) -> int:
    body = {"assistant_id": args.graph_id, "limit": args.limit}
    print_json(_call(args, settings, "POST", "/runs/crons/search", body=body))
    return EXIT_OK


def _get(args: argparse.Namespace, settings: Settings) -> int:
    print_json(_call(args, settings, "GET", f"/runs/crons/{args.cron_id}"))
    return EXIT_OK


def _switch(args: argparse.Namespace, settings: Settings, enabled: bool) -> int:
    path = f"/runs/crons/{args.cron_id}"
    print_json(_call(args, settings, "PATCH", path, body={"enabled": enabled}))
    return EXIT_OK


def _enable(args: argparse.Namespace, settings: Settings) -> int:
    return _switch(args, settings, True)


def _disable(args: argparse.Namespace, settings: Settings) -> int:
    return _switch(args, settings, False)


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    _call(args, settings, "DELETE", f"/runs/crons/{args.cron_id}")
    print(json.dumps({"deleted": args.cron_id}))
    return EXIT_OK
