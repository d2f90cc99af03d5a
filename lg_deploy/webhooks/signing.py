"""The webhook signature: HMAC-SHA256 of "<unix seconds>.<body>", sent with its timestamp.

Header: `X-LG-Deploy-Signature: t=1717171717,v1=<64 hex digits>`. A receiver recomputes the
HMAC over the timestamp, a dot and the raw body bytes with the shared secret, compares it in
constant time, and refuses a timestamp too far from its own clock (a replayed request).
It uses the standard library only and imports none of lg-deploy's server (LangGraph, psycopg,
uvicorn), so a receiver imports it cheaply.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-LG-Deploy-Signature"
DELIVERY_HEADER = "X-LG-Deploy-Delivery"  # the delivery id: the same on every retry (dedupe key)
ATTEMPT_HEADER = "X-LG-Deploy-Attempt"  # 1, 2, ...
EXECUTION_HEADER = "X-LG-Deploy-Execution"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `timestamp`, ".", `body`, keyed with `secret` (UTF-8)."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, now: float | None = None) -> str:
    """The value of X-LG-Deploy-Signature for `body` sent now (or at `now`)."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},{SCHEME}={compute_signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `header` (X-LG-Deploy-Signature) signs the raw `body` with `secret`, and its
    timestamp is within `tolerance_seconds` of `now` (the local clock by default)."""
    if not header:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = compute_signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in signatures)
