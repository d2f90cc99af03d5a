"""Where webhooks may go: the URL's shape, its host, and every address that host resolves to.

LG_DEPLOY_WEBHOOK_ALLOWED_HOSTS is a comma-separated list of entries: `*` (any host whose
addresses are all public), a host name (`hooks.example.com`), a suffix (`*.example.com`), an IP
address (`127.0.0.1`, `::1`) or a network (`10.0.0.0/8`). A URL passes when its host is matched
(`*` matches any; a name or suffix matches host names; an address or network matches IP
literals in it) and every address it resolves to is public or inside a listed address or
network. So loopback, private, link-local (169.254.169.254, where cloud metadata answers),
multicast and other non-public addresses are refused unless listed as addresses; `localhost`
and cloud metadata names are refused unless listed by name. Host names are ASCII (punycode).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

ANY_PUBLIC_HOST = "*"
MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
SETTING = "LG_DEPLOY_WEBHOOK_ALLOWED_HOSTS"
# Names that mean this machine or a cloud's metadata service, refused unless listed by name.
SPECIAL_NAMES = frozenset(
    {
        "localhost",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# The shape every webhook has (the column's CHECK says the same); the rest is checked in code.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+([/?#]\S*)?$"
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_FORBIDDEN_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookRefused(ValueError):
    """A webhook URL lg-deploy will not send to; the message says why, readably."""


@dataclass(frozen=True)
class WebhookUrl:
    """A webhook URL taken apart: scheme, host (lower case, no brackets), port."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def address(self) -> IpAddress | None:
        """The host as an IP address when it is an IP literal, else None."""
        return _as_address(self.host)


def parse_webhook_url(url: str) -> WebhookUrl:
    """`url` taken apart; WebhookRefused unless it is an http(s) URL with a host, no user or
    password, no spaces or control characters, at most 2048 characters."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused(f"must be at most {MAX_URL_CHARS} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise WebhookRefused("must not contain spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url[len(scheme) :].startswith("://"):
        raise WebhookRefused("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise WebhookRefused("must not carry a user or password (the signature authenticates)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookRefused("must name a host")
    if _as_address(host) is None and not _NAME.match(host):
        raise WebhookRefused(f"host {host!r} is not a host name (ASCII; punycode) or IP address")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise WebhookRefused("has a port that is not a number from 0 to 65535") from None
    return WebhookUrl(url, scheme, host, port)


@dataclass(frozen=True)
class AllowList:
    """The parsed LG_DEPLOY_WEBHOOK_ALLOWED_HOSTS: who may receive webhooks."""

    any_host: bool = True
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """The list in `text`; ValueError naming the first entry that is none of the forms."""
        entries = [item.strip().lower().rstrip(".") for item in text.split(",")]
        entries = [item for item in entries if item]
        if not entries:
            raise ValueError("names no host; `*` allows any host with public addresses")
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IpNetwork] = []
        for entry in entries:
            if entry == ANY_PUBLIC_HOST:
                continue
            if entry.startswith("*.") and _NAME.match(entry[2:]):
                suffixes.append(entry[1:])
            elif _NAME.match(entry) and not _looks_numeric(entry):
                names.add(entry)
            else:
                networks.append(_network(entry))
        return cls(ANY_PUBLIC_HOST in entries, frozenset(names), tuple(suffixes), tuple(networks))

    def check_url(self, url: str) -> WebhookUrl:
        """`url` taken apart when its shape and host pass (no DNS lookup); else WebhookRefused."""
        target = parse_webhook_url(url)
        address = target.address
        if address is not None:
            if not (self.any_host or self._listed(address)):
                raise WebhookRefused(f"{target.host} is not in {SETTING}")
            self.check_address(target.host, address)
            return target
        if target.host in self.names:
            return target
        if target.host in SPECIAL_NAMES or target.host.endswith(".localhost"):
            raise WebhookRefused(
                f"{target.host} names this machine or a cloud metadata service;"
                f" list it by name in {SETTING} to allow it"
            )
        if self.any_host or target.host.endswith(self.suffixes):
            return target
        raise WebhookRefused(f"{target.host} is not in {SETTING}")

    def check_address(self, host: str, address: IpAddress) -> None:
        """WebhookRefused unless `address` (of `host`) is public or inside a listed network."""
        address = _unmapped(address)
        if self._listed(address):
            return
        problem = _not_public(address)
        if problem is not None:
            literal = _as_address(host) is not None
            where = f"{address} is" if literal else f"{host} resolves to {address},"
            raise WebhookRefused(f"{where} {problem}; list it in {SETTING} to allow it")

    def _listed(self, address: IpAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def _as_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _looks_numeric(entry: str) -> bool:
    """An entry of digits and dots is an address (maybe a bad one), never a host name."""
    return bool(re.fullmatch(r"[0-9.]+", entry))


def _network(entry: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is not *, a host name, *.suffix, an IP address or a network"
        ) from None


def _unmapped(address: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _not_public(address: IpAddress) -> str | None:
    """Why `address` is not a public one, or None when it is."""
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None
