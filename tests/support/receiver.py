"""A webhook receiver on 127.0.0.1 in a thread: it records every request and answers by a rule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from lg_deploy.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EXECUTION_HEADER,
    SIGNATURE_HEADER,
    verify_signature,
)
from tests.support.servers import served_in_thread

HANG_SECONDS = 60.0
SECRET = "test-webhook-secret-0123456789"


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    delivery_id: str
    attempt: int
    execution_id: str
    signature: str | None
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        """The body, parsed."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def signed_with(self, secret: str = SECRET) -> bool:
        """True when its signature verifies with `secret`."""
        return verify_signature(secret, self.signature, self.body)


# The status to answer a request (given those of its delivery before it), or None: hang until
# the receiver is released (then 200).
Rule = Callable[[Received, list[Received]], int | None]


def always_ok(request: Received, earlier: list[Received]) -> int | None:
    """200 at once."""
    return 200


def fail_twice(request: Received, earlier: list[Received]) -> int | None:
    """500 to the first two tries of each delivery, then 200."""
    return 500 if len(earlier) < 2 else 200


def hang_first(request: Received, earlier: list[Received]) -> int | None:
    """The first try of each delivery hangs; later ones get 200."""
    return None if not earlier else 200


def hang(request: Received, earlier: list[Received]) -> int | None:
    """Every try hangs until released."""
    return None


@dataclass
class Receiver:
    """What a receiver got, and the switch that lets its hanging requests go."""

    url: str
    rule: Rule
    requests: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def got(self) -> list[Received]:
        """The requests so far, in arrival order."""
        with self.lock:
            return list(self.requests)

    def of(self, delivery_id: str) -> list[Received]:
        """The requests of one delivery, in arrival order."""
        return [r for r in self.got() if r.delivery_id == delivery_id]

    def executions(self) -> set[str]:
        """The executions it was told about."""
        return {r.execution_id for r in self.got()}

    def _take(self, request: Received) -> int | None:
        with self.lock:
            earlier = [r for r in self.requests if r.delivery_id == request.delivery_id]
            self.requests.append(request)
            return self.rule(request, earlier)


@contextmanager
def receiving(rule: Rule = always_ok) -> Iterator[Receiver]:
    """A running receiver following `rule`; its hanging requests are released at the end."""
    receiver = Receiver("", rule)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = Received(
                path=self.path,
                delivery_id=self.headers.get(DELIVERY_HEADER, ""),
                attempt=int(self.headers.get(ATTEMPT_HEADER, "0")),
                execution_id=self.headers.get(EXECUTION_HEADER, ""),
                signature=self.headers.get(SIGNATURE_HEADER),
                body=self.rfile.read(length),
                at=time.time(),
            )
            status = receiver._take(request)
            if status is None:
                receiver.released.wait(HANG_SECONDS)
                status = 200
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up (its timeout) and closed the connection

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with served_in_thread(Handler) as url:
        receiver.url = url
        try:
            yield receiver
        finally:
            receiver.released.set()
