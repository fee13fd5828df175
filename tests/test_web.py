"""The web monitor (SPEC §9) in a real browser: Debian's Chromium driven by Playwright, talking
to the real daemon over TCP with its token.

One daemon and one browser for the module; each test has its own browser
context (its own sessionStorage). Waiting is done with Playwright's
auto-waiting assertions (they poll the page with a deadline), never a sleep.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests import e2e
from tests.webkit import TOKEN, WORKFLOWS, WebDaemon, launch_options

#: Upper bound for anything the page shows; Playwright polls until then.
WAIT_MS = 20_000
XSS = "<img src=x onerror=alert(1)>"
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def web() -> Iterator[WebDaemon]:
    base = e2e.short_dir()
    token = base / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    port = e2e.free_port()
    with e2e.running_daemon(
        base,
        workflows=WORKFLOWS,
        api_extra=f'listen = "127.0.0.1:{port}"\ntoken_file = "{token}"',
    ) as daemon:
        yield WebDaemon(daemon, f"http://127.0.0.1:{port}", TOKEN)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**launch_options())
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, web: WebDaemon) -> Iterator[Page]:
    """A tab that already holds the token (as if it had been typed into the prompt once)."""
    context = browser.new_context(base_url=web.url)
    context.add_init_script(f"sessionStorage.setItem('jobd.token', {TOKEN!r})")
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def row(page: Page, job_id: int) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def held(web: WebDaemon, name: str) -> tuple[dict[str, Any], Any]:
    """A running ``hold`` job and the file that lets it finish."""
    go = web.base / f"go-{name}"
    job = web.submit("hold", "-p", f"path={go}", "--name", name)
    e2e.wait_until(lambda: web.job(job["id"])["state"] == "running", what=f"{name} running")
    return job, go


# --------------------------------------------------------------------------- the shell


def test_the_shell_is_served_without_a_token_and_holds_no_data(web: WebDaemon) -> None:
    web.submit("demo", "-p", "who=secret-params", "--name", "secret-name")
    for path in ["/", "/jobs/1", "/timeline", "/queue", "/schedules", "/plugins", "/nodes"]:
        answer = httpx.get(web.url + path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "secret-name" not in answer.text and "secret-params" not in answer.text
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
    assert httpx.get(web.url + "/static/main.js").status_code == 200
    assert httpx.get(web.url + "/v1/jobs").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(web.url + "/jobs/abc", headers=auth).status_code == 404
    assert httpx.get(web.url + "/static/nothing.js").status_code == 404
    assert httpx.get(web.url + "/static/%2e%2e%2fapi.py", headers=auth).status_code == 404


def test_the_shell_has_no_inline_script_or_foreign_origin(web: WebDaemon) -> None:
    html = httpx.get(web.url + "/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script in the shell"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "another origin in the shell"


# --------------------------------------------------------------------------- token


def test_over_tcp_the_page_asks_for_the_token_once(browser: Browser, web: WebDaemon) -> None:
    job = web.submit("demo", "-p", "who=t", "--name", "token-prompt-job")
    context = browser.new_context(base_url=web.url)
    context.set_default_timeout(WAIT_MS)
    try:
        tab = context.new_page()
        tab.goto("/")
        dialog = tab.get_by_role("dialog")
        expect(dialog).to_be_visible()
        tab.get_by_label("token", exact=True).fill("wrong")
        tab.get_by_role("button", name="sign in").click()
        expect(tab.get_by_text("that token was refused")).to_be_visible()
        tab.get_by_label("token", exact=True).fill(TOKEN)
        tab.get_by_role("button", name="sign in").click()
        expect(row(tab, job["id"])).to_be_visible()
        assert tab.evaluate("sessionStorage.getItem('jobd.token')") == TOKEN
        assert TOKEN not in tab.url
        assert context.cookies() == []
        # Another page of the same tab: no second prompt.
        tab.goto("/queue")
        expect(tab.get_by_role("heading", name="queue")).to_be_visible()
        expect(dialog).to_be_hidden()
    finally:
        context.close()


# --------------------------------------------------------------------------- jobs list


def test_the_list_shows_states_in_their_colours(page: Page, web: WebDaemon) -> None:
    draft = web.submit("demo", "-p", "who=d", "--draft", "--name", "colour-draft")
    tentative = web.submit(
        "demo", "-p", "who=t", "--tentative", "--start", "+2h", "--name", "colour-tentative"
    )
    page.goto("/")
    for job, state, colour in [
        (draft, "draft", "rgb(145, 64, 217)"),
        (tentative, "tentative", "rgb(247, 236, 21)"),
    ]:
        line = row(page, job["id"])
        expect(line).to_have_attribute("data-state", state)
        badge = line.locator(".state")
        expect(badge).to_have_text(state)
        expect(badge).to_have_css("background-color", colour)
        expect(line.get_by_role("link", name=job["name"])).to_be_visible()
        expect(line.get_by_role("checkbox", name=f"select job {job['id']}")).to_be_visible()


def test_a_job_name_with_markup_shows_as_text(page: Page, web: WebDaemon) -> None:
    job = web.submit("demo", "-p", f"who={XSS}", "--name", XSS)
    page.on("dialog", lambda dialog: pytest.fail(f"the page ran injected script: {dialog.message}"))
    page.goto("/")
    link = row(page, job["id"]).locator("a.job-name")
    expect(link).to_have_text(XSS)
    assert page.locator("main img").count() == 0
    page.goto(f"/jobs/{job['id']}")
    expect(page.locator(f'[data-job-id="{job["id"]}"] h1')).to_contain_text(XSS)
    assert page.locator("main img").count() == 0


def test_a_change_of_state_appears_without_a_reload(page: Page, web: WebDaemon) -> None:
    job, go = held(web, "live-change")
    page.goto("/")
    line = row(page, job["id"])
    expect(line).to_have_attribute("data-state", "running")
    marker = page.evaluate("window.__marker = 'same page'")
    go.touch()
    expect(line).to_have_attribute("data-state", "completed")
    expect(line.locator(".state")).to_have_text("completed")
    assert page.evaluate("window.__marker") == "same page" or marker is None
    fresh = web.submit("demo", "-p", "who=new", "--name", "appears-live")
    expect(row(page, fresh["id"])).to_be_visible()


def test_the_state_filter(page: Page, web: WebDaemon) -> None:
    draft = web.submit("demo", "-p", "who=f", "--draft", "--name", "filter-draft")
    done = web.submit("demo", "-p", "who=f", "--name", "filter-done")
    e2e.wait_until(lambda: web.job(done["id"])["state"] == "completed", what="completed")
    page.goto("/")
    page.get_by_label("state").select_option(["draft"])
    page.get_by_role("button", name="apply filters").click()
    expect(row(page, draft["id"])).to_be_visible()
    expect(row(page, done["id"])).to_have_count(0)
    for state in page.locator("tbody tr[data-state]").evaluate_all(
        "rows => rows.map(r => r.dataset.state)"
    ):
        assert state == "draft"
    assert "state=draft" in page.url
    page.reload()  # the filter lives in the address: a reload (or a shared link) keeps it
    expect(page.get_by_label("state")).to_have_values(["draft"])
    expect(row(page, done["id"])).to_have_count(0)


def test_the_operations_offered_are_those_the_selection_allows(page: Page, web: WebDaemon) -> None:
    draft = web.submit("demo", "-p", "who=o", "--draft", "--name", "offer-draft")
    page.goto("/")
    page.get_by_role("checkbox", name=f"select job {draft['id']}").check()
    toolbar = page.get_by_role("toolbar", name="batch operations")
    expect(toolbar.get_by_role("button", name="confirm", exact=True)).to_be_visible()
    expect(toolbar.get_by_role("button", name="delete", exact=True)).to_be_visible()
    for absent in ["retry", "resume", "unconfirm", "invoiced"]:
        expect(toolbar.get_by_role("button", name=absent, exact=True)).to_have_count(0)
