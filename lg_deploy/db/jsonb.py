"""JSON for jsonb columns and parameters: orjson where it is exact, the standard library else."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# orjson turns integers beyond 64 bits into floats; 19 digits in a row may be such a number.
_LONG_NUMBER = re.compile(rb"\d{19}")


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, exactly, about twice as fast for the small objects rows hold."""
    if isinstance(data, str):
        data = data.encode()
    if _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(value: Any) -> str:
    """`json.dumps(value)` as jsonb reads it, for plain JSON values (no NaN), about 10x faster.

    orjson refuses integers beyond 64 bits and lone surrogates; those go to `json.dumps`.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)
