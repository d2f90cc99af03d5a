"""The sender's network side: resolve and check a webhook's host, then POST to that address."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from concurrent.futures import Executor

import httpx

from lg_deploy import __version__
from lg_deploy.webhooks.allowlist import AllowList, WebhookUrl


async def resolve(
    allow: AllowList, url: str, executor: Executor | None = None
) -> tuple[WebhookUrl, str]:
    """The URL and the address to connect to: every address its host resolves to now must pass
    the allow-list (so a name that changes its answer later gains nothing: the request goes to
    the address checked). The lookup runs on `executor` (the loop's default when None); OSError
    when the name does not resolve."""
    target = allow.check_url(url)
    if target.address is not None:
        return target, str(target.address)
    lookup = functools.partial(
        socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM
    )
    infos = await asyncio.get_running_loop().run_in_executor(executor, lookup)
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise OSError(f"{target.host} resolves to no address")
    for text in addresses:
        allow.check_address(target.host, ipaddress.ip_address(text))
    return target, addresses[0]


class HttpPoster:
    """POSTs to the checked address, keeping the URL's host name for Host and TLS (SNI and the
    certificate check); no proxy from the environment, no redirect followed, no connection
    reused, the answer's body never read."""

    def __init__(self, timeout_seconds: float, *, verify: ssl.SSLContext | bool = True) -> None:
        """`verify`: the TLS trust, the system's CA bundle by default (tests bring their own)."""
        self._client = httpx.AsyncClient(
            trust_env=False,
            verify=verify,
            follow_redirects=False,
            timeout=timeout_seconds,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": f"lg-deploy/{__version__}"},
        )

    async def post(
        self, target: WebhookUrl, address: str, headers: dict[str, str], body: bytes
    ) -> int:
        """The HTTP status the receiver answered."""
        url = httpx.URL(target.url)
        extensions = {"sni_hostname": target.host} if target.address is None else {}
        async with self._client.stream(
            "POST",
            url.copy_with(host=address),
            content=body,
            headers={**headers, "Host": url.netloc.decode("ascii")},
            extensions=extensions,
        ) as response:
            return response.status_code

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()
