"""A small HTTP/1.1 keep-alive load generator (its own process, so it does not share a core's
event loop with the server it measures): `python -m bench.loadgen URL BODY CONNECTIONS SECONDS`
prints {"requests", "errors", "seconds"} as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


class Connection:
    """One keep-alive connection sending POSTs of a JSON body."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST `body`; the status and the response body."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        """Close the socket."""
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


async def hammer(url: str, body: bytes, connections: int, seconds: float) -> dict[str, float]:
    """As many requests as `connections` closed loops answer in `seconds` (after a warm-up)."""
    counts = {"requests": 0, "errors": 0}
    measuring = False
    stop_at = 0.0

    async def loop() -> None:
        conn = Connection(url)
        try:
            while not stop_at or time.monotonic() < stop_at:
                status, _ = await conn.post(body)
                if measuring:
                    counts["requests" if status in (200, 201, 202) else "errors"] += 1
        finally:
            await conn.close()

    tasks = [asyncio.create_task(loop()) for _ in range(connections)]
    await asyncio.sleep(min(1.0, seconds / 4))  # warm-up: connections, pool, prepared statements
    measuring = True
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*tasks)
    return {**counts, "seconds": time.monotonic() - started}


def main() -> None:
    """Command line entry."""
    url, body, connections, seconds = sys.argv[1:5]
    result = asyncio.run(hammer(url, body.encode(), int(connections), float(seconds)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
