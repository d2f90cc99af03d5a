"""How a failed run is written down: a one-line `error`, and the bounded traceback beside it."""

from __future__ import annotations

import re
import traceback as tb

from lg_deploy.db.jsonb import storable_text
from lg_deploy.errors import LgDeployError

# The most of a traceback kept: its start (the outer frames) and its end (where it was raised,
# and the exception), with a marker saying how much was cut between them.
MAX_TRACEBACK_CHARS = 16_384
TRACEBACK_HEAD_CHARS = 4_096
# An `error` written by describe_error: "Type: message" (the SQL trigger of 0011 reads it alike).
_ERROR_TYPE = re.compile(r"^(?P<type>[A-Za-z_][A-Za-z0-9_.]*): (?P<message>.*)$", re.DOTALL)


def describe_error(error: BaseException) -> str:
    """A readable one-line error for the `error` column (text PostgreSQL can store)."""
    if isinstance(error, LgDeployError):
        return storable_text(str(error))
    text = storable_text(str(error).strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def error_parts(error: str | None) -> dict[str, str]:
    """A stored `error` as the platform reports one: {"error": type, "message": text}; text
    that names no type is an "Error"."""
    text = error or "failed"
    match = _ERROR_TYPE.match(text)
    kind, message = (match["type"], match["message"]) if match else ("Error", text)
    return {"error": kind, "message": message}


def traceback_of(error: BaseException) -> str | None:
    """The traceback to store for a run that failed with `error`; None for lg-deploy's own errors.

    An unknown graph or unstorable output is said in full by its one-line message.
    """
    return None if isinstance(error, LgDeployError) else format_traceback(error)


def format_traceback(error: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """`error`'s full traceback as storable text of at most `limit` characters."""
    text = storable_text("".join(tb.format_exception(error)).rstrip("\n"))
    if len(text) <= limit:
        return text
    head = min(TRACEBACK_HEAD_CHARS, limit // 4)
    marker = "\n  ... {} characters cut ...\n"
    tail = limit - head - len(marker.format(len(text)))
    cut = len(text) - head - tail
    return f"{text[:head]}{marker.format(cut)}{text[-tail:]}"
