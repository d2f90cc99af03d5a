"""Pages from the Jinja templates (every value escaped); the headers of every console answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lg_deploy.console.charts import human_duration
from lg_deploy.console.session import CSRF_FIELD, csrf_token, keep_csrf

TEMPLATES = Path(__file__).resolve().parent / "templates"
COLLAPSE_CHARS = 1_500
MAX_SHOWN_CHARS = 200_000
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def svg_markup(svg: str) -> Markup:
    """SVG made by charts.py or drawing.py, inserted as markup: they escape every text they
    draw (their tests prove a `<script>` label comes out escaped)."""
    return Markup(svg)  # nosec B704  # noqa: S704


def pretty_json(value: Any) -> str:
    """The value as indented JSON (cut, with a marker, past MAX_SHOWN_CHARS)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if len(text) > MAX_SHOWN_CHARS:
        cut = len(text) - MAX_SHOWN_CHARS
        return text[:MAX_SHOWN_CHARS] + f"\n… {cut:,} more characters (read it from the API)"
    return text


def when(moment: datetime | None) -> str:
    """A moment as UTC text to the second, or an em dash."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """Seconds as a short human duration (350 ms, 4.2 s, 3.1 min, 2.2 h), or an em dash."""
    return "—" if seconds is None else human_duration(seconds)


def since(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was, as a short duration."""
    if moment is None:
        return "—"
    return duration(((now or datetime.now(UTC)) - moment).total_seconds())


@cache
def environment() -> Environment:
    """The template environment: autoescaping on, undefined names an error."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pretty_json=pretty_json, when=when, duration=duration, since=since)
    env.globals.update(COLLAPSE_CHARS=COLLAPSE_CHARS, CSRF_FIELD=CSRF_FIELD)
    return env


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The template as a page; only Markup values (the SVG modules' output) skip escaping."""
    page = (
        environment()
        .get_template(template)
        .render(request=request, csrf=csrf_token(request), **context)
    )
    response = HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
    keep_csrf(response, request)
    return response


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every console answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the call on, adding the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message["headers"] = [*kept, *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
