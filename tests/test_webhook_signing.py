"""The pieces of webhooks that need no process: the signature, the allow-list, the back-off."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from lg_deploy.webhooks import verify_signature
from lg_deploy.webhooks.allowlist import AllowList, WebhookRefused
from lg_deploy.webhooks.sender import retry_delay
from lg_deploy.webhooks.signing import signature_header
from lg_deploy.webhooks.transport import resolve

SECRET = "whsec-0123456789abcdef"
BODY = b'{"execution_id": "x", "status": "COMPLETED"}'
NOW = 1_800_000_000


@pytest.mark.req("WEBHOOK-SIGNED")
def test_the_signature_is_an_hmac_of_timestamp_dot_body_any_language_can_check() -> None:
    """The signature is HMAC-SHA256 of "t.body"; a changed body, secret or old time fails."""
    header = signature_header(SECRET, BODY, now=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert verify_signature(SECRET, header, BODY, now=NOW + 10)
    assert not verify_signature(SECRET, header, BODY + b" ", now=NOW)
    assert not verify_signature("another-secret-0123", header, BODY, now=NOW)
    assert not verify_signature(SECRET, header, BODY, now=NOW + 301)
    assert verify_signature(SECRET, header, BODY, now=NOW + 301, tolerance_seconds=600)
    for broken in (None, "", "v1=" + expected, f"t={NOW}", f"t=soon,v1={expected}"):
        assert not verify_signature(SECRET, broken, BODY, now=NOW)


ALLOWED_BY_DEFAULT = ["https://hooks.example.com/x", "http://93.184.216.34:8080/x?a=1"]
REFUSED_BY_DEFAULT = {
    "http://169.254.169.254/latest/meta-data/": "link-local",
    "http://[::ffff:169.254.169.254]/": "link-local",
    "http://[fe80::1%25eth0]/": "link-local",
    "http://metadata.google.internal/": "cloud metadata",
    "http://localhost:8000/": "names this machine",
    "http://api.localhost/": "names this machine",
    "http://127.0.0.1/": "loopback",
    "http://[::1]/": "loopback",
    "http://10.1.2.3/": "private",
    "http://192.168.0.10/": "private",
    "http://100.64.0.1/": "not a public address",
    "http://0.0.0.0/": "unspecified",
    "http://224.0.0.1/": "multicast",
    "file:///etc/passwd": "http:// or https://",
    "http://user:pw@example.com/": "user or password",
    "http://example.com:70000/": "port",
}


@pytest.mark.req("WEBHOOK-ALLOWLIST")
def test_the_default_allow_list_takes_public_hosts_only() -> None:
    """`*` passes public hosts; internal addresses, local names, non-http URLs fail, saying why."""
    allow = AllowList.parse("*")
    for url in ALLOWED_BY_DEFAULT:
        assert allow.check_url(url).url == url
    for url, reason in REFUSED_BY_DEFAULT.items():
        with pytest.raises(WebhookRefused, match=reason):
            allow.check_url(url)


@pytest.mark.req("WEBHOOK-ALLOWLIST")
def test_a_configured_allow_list_names_hosts_suffixes_addresses_and_networks() -> None:
    """Listed names, suffixes, addresses and networks pass; names must resolve to allowed ones."""
    allow = AllowList.parse("hooks.example.com, *.corp.example, 127.0.0.1, 10.0.0.0/8, localhost")
    for url in ("https://hooks.example.com/", "https://a.b.corp.example/", "http://127.0.0.1:9/"):
        allow.check_url(url)
    allow.check_url("http://10.9.8.7/")
    for url in ("https://example.com/", "http://8.8.8.8/", "http://192.168.1.1/"):
        with pytest.raises(WebhookRefused):
            allow.check_url(url)
    target, address = asyncio.run(resolve(allow, "http://localhost:9/"))
    assert (target.host, address) in {("localhost", "127.0.0.1"), ("localhost", "::1")}
    only_name = AllowList.parse("localhost")
    with pytest.raises(WebhookRefused, match=r"localhost resolves to .*, a loopback address"):
        asyncio.run(resolve(only_name, "http://localhost:9/"))
    for bad in ("", " , ", "hooks example", "10.0.0.0/33", "1.2.3"):
        with pytest.raises(ValueError, match=r"host|network"):
            AllowList.parse(bad)


@pytest.mark.req("WEBHOOK-DELIVERY")
def test_the_back_off_doubles_is_capped_and_half_random() -> None:
    """Try n waits between half and all of min(cap, base x 2^(n-1))."""
    assert [retry_delay(n, 2.0, 600.0, rand=lambda: 1.0) for n in (1, 2, 3, 10, 50)] == [
        2.0,
        4.0,
        8.0,
        600.0,
        600.0,
    ]
    assert [retry_delay(n, 2.0, 600.0, rand=lambda: 0.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
