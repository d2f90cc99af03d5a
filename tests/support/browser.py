"""Browser tests: Debian's Chromium under sync Playwright, a page per test and its JS errors.

The browser is Debian's `chromium` package (scripts/install-test-services), never one Playwright
downloads. While a sync Playwright is open it marks its own asyncio loop as running in this
thread, so asyncio cannot run there: browser tests are plain `def` tests using sync fixtures
only (no async fixtures, no asyncio.run), and the browser lives per module, so a module of
browser tests holds no async tests. A test that needs the HTTP API uses `start_server`.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

# The real binary: /usr/bin/chromium is a shell wrapper that sources /etc/chromium.d (extension
# and GPU flags, and a /dev/shm probe) before exec'ing it.
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
# Playwright itself adds --headless (Chromium's new headless mode, its only one since 132) and
# --no-sandbox (which Chromium needs as root). Containers often have a small /dev/shm.
CHROMIUM_ARGS = ["--disable-dev-shm-usage"]
DESKTOP_VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}
ACTION_TIMEOUT_MS = 10_000
# How long an `expect` waits for its condition (Playwright's default, 5 s, is short for two test
# processes, a server and a browser on two busy cores); a condition met returns at once.
EXPECT_TIMEOUT_MS = 15_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def chromium_path() -> str | None:
    """Debian's Chromium executable, or None when it is not installed."""
    found = (*CHROMIUM_PATHS, shutil.which("chromium"), shutil.which("chromium-browser"))
    return next((path for path in found if path and os.access(path, os.X_OK)), None)


def record_errors(page: Page, errors: list[str]) -> None:
    """Append the page's console errors (CSP violations among them) and uncaught errors.

    Not the failed /favicon.ico fetch Chromium makes by itself for a page without an icon.
    """

    def console(message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        if message.type == "error" and urlsplit(url).path != "/favicon.ico":
            errors.append(f"console error: {message.text} ({url})")

    def page_error(error: Error) -> None:
        errors.append(f"page error: {error.name}: {error.message}")

    page.on("console", console)
    page.on("pageerror", page_error)


@contextmanager
def open_page(browser: Browser, errors: list[str] | None = None, **options: Any) -> Iterator[Page]:
    """A page in a new context (Playwright `options`), errors into `errors`; closed after."""
    context = browser.new_context(**options)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        page = context.new_page()
        if errors is not None:
            record_errors(page, errors)
        yield page
    finally:
        context.close()


@contextmanager
def phone_page(browser: Browser, errors: list[str] | None = None) -> Iterator[Page]:
    """A 390x844 touch page with is_mobile (the page needs a viewport meta tag to fit it)."""
    with open_page(
        browser, errors, viewport=PHONE_VIEWPORT, is_mobile=True, has_touch=True
    ) as page:
        yield page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium under sync Playwright, one per test module."""
    executable = chromium_path()
    if executable is None:
        pytest.fail("Chromium is not installed: run scripts/install-test-services", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_errors() -> list[str]:
    """The console errors and uncaught errors the `page` fixture's page logged, in order."""
    return []


@pytest.fixture
def page(
    request: pytest.FixtureRequest, browser: Browser, page_errors: list[str]
) -> Iterator[Page]:
    """A 1280x800 page in its own context, recording into `page_errors`; closed after the test."""
    if inspect.iscoroutinefunction(request.function):
        pytest.fail("browser tests must be plain def tests: sync Playwright blocks asyncio")
    with open_page(browser, page_errors, viewport=DESKTOP_VIEWPORT) as opened:
        yield opened
