"""The sender's HTTPS: it connects to the address it checked, yet TLS checks the URL's name."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from lg_deploy.webhooks.allowlist import AllowList
from lg_deploy.webhooks.transport import HttpPoster

NAME = "hooks.test"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for NAME and its key, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing: run scripts/install-test-services", False)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextmanager
def https_receiver(cert: Path, key: Path, seen: list[tuple[str, str]]) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 recording (SNI, Host) of each POST; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str] = []

    def note_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = note_name

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append((names[-1], self.headers.get("Host", "")))
            status = 302 if self.path == "/moved" else 200
            self.send_response(status)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.req("WEBHOOK-ALLOWLIST")
def test_https_goes_to_the_checked_address_with_the_urls_name_in_sni_host_and_certificate(
    tmp_path: Path,
) -> None:
    """SNI, Host and the certificate check use the URL's name; a wrong name fails; no redirect."""
    cert, key = make_certificate(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    allow = AllowList.parse(f"{NAME},other.test,127.0.0.1")
    seen: list[tuple[str, str]] = []

    async def post(url: str) -> int:
        poster = HttpPoster(5.0, verify=trust)
        try:
            return await poster.post(allow.check_url(url), "127.0.0.1", {}, b"{}")
        finally:
            await poster.aclose()

    with https_receiver(cert, key, seen) as port:
        assert asyncio.run(post(f"https://{NAME}:{port}/hook")) == 200
        assert asyncio.run(post(f"https://{NAME}:{port}/moved")) == 302
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            asyncio.run(post(f"https://other.test:{port}/hook"))
    assert seen == [(NAME, f"{NAME}:{port}"), (NAME, f"{NAME}:{port}")]
