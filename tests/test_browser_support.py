"""The browser fixtures (tests/support/browser.py) against a tiny local site under a strict CSP."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import phone_page
from tests.support.servers import served_in_thread

CSP = "default-src 'self'"
VIEWPORT_META = '<meta name="viewport" content="width=device-width, initial-scale=1">'
FILES = {
    "/": (
        "text/html",
        f"<!doctype html><html><head><title>button</title>{VIEWPORT_META}</head><body>"
        '<button id="go">Go</button><p id="out">waiting</p>'
        '<script src="/app.js"></script></body></html>',
    ),
    "/app.js": (
        "text/javascript",
        'document.getElementById("go").addEventListener("click", () => {\n'
        '  document.getElementById("out").textContent = "clicked";\n'
        "});\n",
    ),
    "/throw": (
        "text/html",
        "<!doctype html><html><head><title>throw</title></head><body>"
        '<script src="/throw.js"></script></body></html>',
    ),
    "/throw.js": ("text/javascript", 'throw new TypeError("boom");\n'),
    "/inline": (
        "text/html",
        "<!doctype html><html><head><title>inline</title></head><body>"
        '<script>document.title = "ran";</script></body></html>',
    ),
}


class SiteHandler(BaseHTTPRequestHandler):
    """Serves FILES with the CSP header; 404 otherwise."""

    def do_GET(self) -> None:
        """Answer one GET from FILES."""
        found = FILES.get(self.path)
        if found is None:
            self.send_error(404)
            return
        content_type, text = found
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The base URL of SiteHandler on a free port of 127.0.0.1, served by a thread."""
    with served_in_thread(SiteHandler) as url:
        yield url


@pytest.mark.req("README-RUN")
def test_page_runs_same_origin_script_on_click(
    page: Page, page_errors: list[str], site: str
) -> None:
    """A click runs the same-origin script under the CSP, and the page logs no errors."""
    page.goto(site)
    page.get_by_role("button", name="Go").click()
    expect(page.locator("#out")).to_have_text("clicked")
    assert page.viewport_size == {"width": 1280, "height": 800}
    assert page_errors == []


@pytest.mark.req("README-RUN")
def test_page_errors_record_a_csp_violation(page: Page, page_errors: list[str], site: str) -> None:
    """An inline script the CSP blocks does not run and lands in page_errors."""
    with page.expect_console_message(lambda message: message.type == "error"):
        page.goto(f"{site}/inline")
    assert page.title() == "inline"
    assert len(page_errors) == 1
    assert "Content Security Policy" in page_errors[0]
    assert "/inline" in page_errors[0]


@pytest.mark.req("README-RUN")
def test_page_errors_record_an_uncaught_error(
    page: Page, page_errors: list[str], site: str
) -> None:
    """An error a script throws and nothing catches lands in page_errors."""
    with page.expect_event("pageerror"):
        page.goto(f"{site}/throw")
    assert page_errors == ["page error: TypeError: boom"]


@pytest.mark.req("README-RUN")
def test_phone_page_is_a_mobile_viewport(browser: Browser, site: str) -> None:
    """phone_page gives a 390 px wide touch page, and records its errors when asked."""
    errors: list[str] = []
    with phone_page(browser, errors) as phone:
        phone.goto(site)
        assert phone.evaluate("window.innerWidth") == 390
        assert phone.evaluate("matchMedia('(pointer: coarse)').matches") is True
        phone.get_by_role("button", name="Go").tap()
        expect(phone.locator("#out")).to_have_text("clicked")
    assert errors == []
