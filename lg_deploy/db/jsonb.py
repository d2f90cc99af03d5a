"""JSON for jsonb columns and parameters: what PostgreSQL can store, and fast exact codecs."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# orjson turns integers beyond 64 bits into floats; 19 digits in a row may be such a number.
_LONG_NUMBER = re.compile(rb"\d{19}")
# jsonb refuses NUL, and PostgreSQL refuses surrogate code points (they are not Unicode text).
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
NUL = "\x00"


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, exactly: decoded by orjson unless a number may pass 64 bits."""
    if isinstance(data, str):
        data = data.encode()
    if _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(value: Any) -> str:
    """`json.dumps(value)` as jsonb reads it, for plain JSON values (no NaN), by orjson.

    orjson refuses integers beyond 64 bits and lone surrogates; those go to `json.dumps`.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)


def storable_text(text: str) -> str:
    """`text` with what PostgreSQL cannot store in text (NUL, surrogates) replaced by U+FFFD."""
    return _UNSTORABLE_CHAR.sub("\ufffd", text)


def unstorable_char(value: object) -> str | None:
    """The first NUL or surrogate in a key or string of plain JSON data (jsonb refuses them)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and (match := _UNSTORABLE_CHAR.search(item)):
            return match[0]
    return None


def contains(stored: Any, wanted: Any) -> bool:
    """PostgreSQL's jsonb `stored @> wanted`: every wanted key present with a contained value,
    every wanted array item contained in some stored item, scalars equal (1 = 1.0)."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            key in stored and contains(stored[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return isinstance(stored, list) and all(
            any(contains(item, value) for item in stored) for value in wanted
        )
    if isinstance(stored, bool) or isinstance(wanted, bool):  # true is not 1 in jsonb
        return stored is wanted
    return bool(stored == wanted)
