"""The console at /ui in headless Chromium against a real `lg-deploy serve` with real executions.

Rows come from the API and from plain SQL; what the pages show is checked against what psql
reads. With LG_DEPLOY_SCREENSHOTS=folder each page's screenshot is written there
(scripts/console-screenshots refreshes docs/console/ this way).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from psycopg.types.json import Jsonb

from tests.support.browser import phone_page
from tests.support.graphs import thread_graphs_env
from tests.support.processes import SqlConn
from tests.support.servers import ServeProcess, running_server
from tests.support.sql import insert_row, status_of

API_KEY = "console-key"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
RUN_SECONDS = 30.0


@pytest.fixture
def server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    """`lg-deploy serve` with the thread graphs, keyed API_KEY."""
    env = thread_graphs_env({**worker_env, "LG_DEPLOY_API_KEY": API_KEY}, tmp_path)
    with running_server(env, tmp_path) as started:
        yield started


@pytest.fixture
def api(server: ServeProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the server presenting the API key."""
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30) as client:
        yield client


def sign_in(page: Page, url: str, path: str = "/ui/") -> None:
    """Open `path`, which sends the browser to the sign-in form, and sign in with the key."""
    page.goto(url + path)
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + path)


def shoot(page: Page, name: str) -> None:
    """Save the page's screenshot as NAME.png when LG_DEPLOY_SCREENSHOTS names a folder."""
    folder = os.environ.get("LG_DEPLOY_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def submit(api: httpx.Client, graph_id: str, payload: dict[str, Any], **fields: Any) -> str:
    """POST /executions; the new execution's id."""
    answer = api.post("/executions", json={"graph_id": graph_id, "input": payload, **fields})
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["execution_id"]
    return execution_id


def final(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The execution once final (the API's long poll)."""
    state: dict[str, Any] = api.get(
        f"/executions/{execution_id}/wait", params={"timeout": RUN_SECONDS}
    ).json()
    assert state["status"] in ("COMPLETED", "FAILED"), state
    return state


@pytest.mark.req("CONSOLE-OVERVIEW", "CONSOLE-SECURITY")
def test_overview_shows_the_queue_throughput_workers_and_unserved_graphs_after_sign_in(
    server: ServeProcess, api: httpx.Client, sql: SqlConn, page: Page, page_errors: list[str]
) -> None:
    """Signed in by the form, the overview counts what psql counts: a due row of a graph nobody
    serves, a running sleep on the server's worker, the last hour's completed and failed."""
    final(api, submit(api, "echo", {"n": 1}))
    final(api, submit(api, "fail", {"n": 2}, max_attempts=1))
    sleeping = submit(api, "sleep", {"seconds": 600})
    waiting = insert_row(sql, graph_id="nobody_serves")
    sign_in(page, server.url)
    expect(page.locator("#queue-depth")).to_contain_text("nobody_serves")
    expect(page.locator("#workers")).to_contain_text(sleeping[:8])
    expect(page.locator("#unserved")).to_contain_text("nobody_serves")
    expect(page.locator("#oldest-waiting")).to_contain_text(waiting[:8])
    expect(page.locator("#completed-hour")).to_have_text("1")
    expect(page.locator("#failed-hour")).to_have_text("1")
    assert page.locator(".chart-throughput .bar-completed").count() >= 1
    worker_id = sql.execute("SELECT worker_id FROM lg_deploy.workers").fetchone()
    assert worker_id is not None
    expect(page.locator("#workers")).to_contain_text(worker_id[0])
    shoot(page, "overview")
    assert page_errors == []


@pytest.mark.req("CONSOLE-LIVE")
def test_the_overview_updates_without_reloading(
    server: ServeProcess, sql: SqlConn, page: Page, page_errors: list[str]
) -> None:
    """A row inserted by SQL after the page opened appears in its queue depth by itself."""
    sign_in(page, server.url)
    expect(page.locator("#queue-depth")).to_have_count(0)
    page.evaluate("window.__same_page = true")
    insert_row(sql, graph_id="late_graph")
    expect(page.locator("#queue-depth")).to_contain_text("late_graph")
    assert page.evaluate("window.__same_page") is True
    assert page_errors == []


@pytest.mark.req("CONSOLE-EXECUTIONS")
def test_filters_search_and_keyset_pages_list_what_sql_selects(
    server: ServeProcess, sql: SqlConn, page: Page, page_errors: list[str]
) -> None:
    """Status, graph, metadata and thread filters, id and idempotency-key search, and 25-row
    keyset pages that together show every row once."""
    ids = [insert_row(sql, graph_id="paged", metadata=Jsonb({"n": n})) for n in range(30)]
    keyed = insert_row(sql, graph_id="keyed", idempotency_key="order-77")
    tagged = insert_row(sql, graph_id="keyed", metadata=Jsonb({"customer": "acme"}))
    sign_in(page, server.url, "/ui/executions")
    page.get_by_label("Graph").select_option("paged")
    page.get_by_role("button", name="Apply filters").click()
    shown = page.locator("#executions tbody tr")
    expect(shown).to_have_count(25)
    first = set(shown.evaluate_all("rows => rows.map(r => r.dataset.execution)"))
    page.get_by_role("link", name="Older").click()
    expect(shown).to_have_count(5)
    second = set(shown.evaluate_all("rows => rows.map(r => r.dataset.execution)"))
    assert first | second == set(ids)
    assert not first & second
    page.goto(server.url + "/ui/executions")
    page.get_by_label("Id or idempotency key").fill("order-77")
    page.keyboard.press("Enter")
    expect(shown).to_have_count(1)
    expect(shown.first).to_have_attribute("data-execution", keyed)
    page.goto(server.url + "/ui/executions")
    page.get_by_label("Metadata contains (JSON)").fill('{"customer": "acme"}')
    page.get_by_role("button", name="Apply filters").click()
    expect(shown).to_have_count(1)
    expect(shown.first).to_have_attribute("data-execution", tagged)
    page.get_by_label("Metadata contains (JSON)").fill("not json")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".problem")).to_contain_text("JSON object")
    page.goto(server.url + f"/ui/executions?q={ids[3]}")
    expect(shown).to_have_count(1)
    page.goto(server.url + "/ui/executions")
    page.get_by_label("Status").select_option("QUEUED")
    page.get_by_role("button", name="Apply filters").click()
    expect(shown).to_have_count(25)
    shoot(page, "executions")
    assert page_errors == []


@pytest.mark.req("CONSOLE-EXECUTION", "CONSOLE-THREADS-GRAPHS", "CONSOLE-LIVE")
def test_cancelling_a_running_execution_changes_its_page_and_ends_its_live_stream(
    server: ServeProcess, api: httpx.Client, sql: SqlConn, page: Page, page_errors: list[str]
) -> None:
    """A run streaming on a thread shows its first update live; Cancel stops it: its page turns
    FAILED by itself and its stream ends (a cancelled run sends no error event, as on the
    platform)."""
    thread = api.post("/threads", json={}).json()["thread_id"]
    body = {
        "assistant_id": "notes",
        "input": {"note": "first", "seconds": 600},
        "stream_mode": ["updates", "values"],
    }
    run = api.post(f"/threads/{thread}/runs", json=body).json()["run_id"]
    sign_in(page, server.url, f"/ui/executions/{run}")
    expect(page.locator("#stream")).to_contain_text('"notes":["first"]', timeout=RUN_SECONDS * 1000)
    expect(page.locator(".title-row .status")).to_have_text("RUNNING")
    shoot(page, "execution-running")
    page.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(page.locator(".title-row .status")).to_have_text("FAILED", timeout=RUN_SECONDS * 1000)
    expect(page.locator("#stream-state")).to_contain_text("ended")
    assert status_of(sql, run) == "FAILED"
    page.goto(server.url + f"/ui/threads/{thread}")
    expect(page.locator("#thread-runs")).to_contain_text(run[:8])
    expect(page.locator("#state-history")).to_contain_text("first")
    shoot(page, "thread")
    assert page_errors == []


@pytest.mark.req("CONSOLE-EXECUTIONS")
def test_bulk_cancel_and_retry_ask_for_confirmation_and_change_the_rows(
    server: ServeProcess, api: httpx.Client, sql: SqlConn, page: Page, page_errors: list[str]
) -> None:
    """Two QUEUED rows chosen and cancelled after the confirmation page are FAILED in psql; a
    FAILED one retried makes a new QUEUED execution naming it in metadata.retry_of."""
    queued = [insert_row(sql, graph_id="held") for _ in range(2)]
    failed = final(api, submit(api, "fail", {"n": 3}, max_attempts=1))["execution_id"]
    sign_in(page, server.url, "/ui/executions?graph=held")
    for execution_id in queued:
        page.get_by_label(f"Select {execution_id}").check()
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.get_by_role("heading", name="Cancel 2 executions?")).to_be_visible()
    assert [status_of(sql, i) for i in queued] == ["QUEUED", "QUEUED"]
    page.get_by_role("button", name="Yes, cancel 2").click()
    expect(page.locator(".notice")).to_contain_text("2 cancelled")
    assert [status_of(sql, i) for i in queued] == ["FAILED", "FAILED"]
    page.goto(server.url + "/ui/executions?status=FAILED&graph=fail")
    page.get_by_label(f"Select {failed}").check()
    page.get_by_role("button", name="Retry selected failed").click()
    page.get_by_role("button", name="Yes, retry 1").click()
    expect(page.locator(".notice")).to_contain_text("1 retried")
    retried = sql.execute(
        "SELECT execution_id, graph_id, input FROM lg_deploy.executions"
        " WHERE metadata ->> 'retry_of' = %s",
        (failed,),
    ).fetchall()
    assert [(row[1], row[2]) for row in retried] == [("fail", {"n": 3})]
    page.goto(server.url + f"/ui/executions/{retried[0][0]}")
    expect(page.get_by_text("Retry of")).to_be_visible()
    assert page_errors == []


@pytest.mark.req("CONSOLE-SECURITY")
def test_untrusted_values_render_as_text_never_as_markup(
    server: ServeProcess, api: httpx.Client, sql: SqlConn, page: Page, page_errors: list[str]
) -> None:
    """A graph id, input, output, metadata and error holding <script> and onerror markup show
    as text on every page; nothing of it runs."""
    echoed = final(api, submit(api, "echo", {"say": XSS}))
    insert_row(sql, graph_id=XSS, metadata=Jsonb({"x": XSS}))  # stays QUEUED: nobody serves it
    hostile = insert_row(sql, graph_id=XSS, input=Jsonb({"x": XSS}))
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'FAILED', error = %s WHERE execution_id = %s",
        (XSS, hostile),
    )
    sign_in(page, server.url)
    for path in (
        "/ui/",
        "/ui/executions",
        f"/ui/executions/{echoed['execution_id']}",
        f"/ui/executions/{hostile}",
        "/ui/graphs",
    ):
        page.goto(server.url + path)
        expect(page.locator("body")).to_contain_text("<script>window.__xss = 1</script>")
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("main script, main img").count() == 0, path
    page.goto(server.url + f"/ui/executions/{hostile}")
    shoot(page, "execution-xss")
    assert page_errors == []


@pytest.mark.req("CONSOLE-THREADS-GRAPHS")
def test_graph_pages_draw_each_graph_and_rate_its_failures(
    server: ServeProcess, api: httpx.Client, page: Page, page_errors: list[str]
) -> None:
    """/ui/graphs lists the served graphs with their last day's failure rate; a graph's page
    draws its nodes and edges and gives LangGraph's Mermaid text."""
    final(api, submit(api, "fail", {"n": 4}, max_attempts=1))
    final(api, submit(api, "echo", {"n": 5}))
    sign_in(page, server.url, "/ui/graphs")
    expect(page.locator("#graphs")).to_contain_text("notes")
    page.get_by_role("link", name="fail", exact=True).click()
    expect(page.locator("#failure-rate")).to_have_text("100.0 %")
    page.goto(server.url + "/ui/graphs/notes")
    drawing = page.locator("#drawing svg")
    expect(drawing.locator(".node-label")).to_have_count(4)
    labels = drawing.locator(".node-label").all_text_contents()
    assert sorted(labels) == ["__end__", "__start__", "wait", "write"]
    assert drawing.locator("path.edge").count() == 3
    page.get_by_text("Mermaid source").click()
    expect(page.locator("#mermaid")).to_contain_text("write --> wait")
    shoot(page, "graph")
    assert page_errors == []


@pytest.mark.req("CONSOLE-LIVE")
def test_the_console_is_usable_by_keyboard_and_fits_a_phone(
    server: ServeProcess, api: httpx.Client, browser: Browser, page: Page, page_errors: list[str]
) -> None:
    """Tab reaches the skip link then the navigation, Enter follows it; at 390 px no page is
    wider than the screen (tables scroll inside their box)."""
    final(api, submit(api, "echo", {"n": 6}))
    sign_in(page, server.url)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Executions")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url + "/ui/executions")
    cookies = {c["name"]: c for c in page.context.cookies()}
    with phone_page(browser, page_errors) as phone:
        phone.context.add_cookies([cookies["lg_deploy_session"]])
        for path in ("/ui/", "/ui/executions", "/ui/graphs/notes", "/ui/threads"):
            phone.goto(server.url + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
        phone.goto(server.url + "/ui/")
        shoot(phone, "overview-phone")
    assert page_errors == []


@pytest.mark.req("CONSOLE-SECURITY")
def test_the_session_cookie_is_http_only_and_same_site_and_pages_carry_a_csp(
    server: ServeProcess, page: Page
) -> None:
    """Signing in sets an HttpOnly SameSite=Strict cookie scoped to /ui, which scripts cannot
    read; every page answers with a Content-Security-Policy that allows no inline script."""
    sign_in(page, server.url)
    session = next(c for c in page.context.cookies() if c["name"] == "lg_deploy_session")
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/ui")
    assert "lg_deploy_session" not in page.evaluate("document.cookie")
    for path in ("/ui/executions", "/ui/graphs", "/ui/static/console.js"):
        answer = page.goto(server.url + path)
        assert answer is not None
        assert answer.status == 200
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["x-frame-options"] == "DENY"
