"""The web monitor (SPEC §9) in a real browser: Debian's Chromium driven by Playwright, talking
to the real daemon over TCP with its token.

One daemon and one browser for the module; each test has its own browser
context (its own sessionStorage). Waiting is done with Playwright's
auto-waiting assertions (they poll the page with a deadline), never a sleep.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests import e2e
from tests.webkit import TOKEN, WAIT_MS, WORKFLOWS, WebDaemon, held, iso_at, timeline_bar

XSS = "<img src=x onerror=alert(1)>"
VIEWER_TOKEN = "wall-viewer-token-77c2"
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def web() -> Iterator[WebDaemon]:
    base = e2e.short_dir()
    token = base / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    viewer = base / "viewer-token"
    viewer.write_text(VIEWER_TOKEN + "\n")
    viewer.chmod(0o600)
    port = e2e.free_port()
    api = (
        f'listen = "127.0.0.1:{port}"\ntoken_file = "{token}"\n'
        f'[[api.tokens]]\nname = "wall"\nfile = "{viewer}"\nrole = "viewer"'
    )
    with e2e.running_daemon(base, workflows=WORKFLOWS, api_extra=api) as daemon:
        yield WebDaemon(daemon, f"http://127.0.0.1:{port}", TOKEN)


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


# --------------------------------------------------------------------------- filters


def iso_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def filtered(web: WebDaemon) -> dict[str, Any]:
    """Two drafts that differ in every filter: ``a`` (demo, asset, enc-2, in 30 days, the
    needle's name) and ``b`` (talk, no asset, no resource, in 60 days)."""
    uid = uuid.uuid4().hex[:8]
    day = 86400
    a = web.submit(
        "demo", "-p", "who=a", "--draft", "--asset", f"fa-{uid}", "--resource", "enc-2",
        "--start", iso_in(30 * day), "--name", f"needle-{uid}",
    )  # fmt: skip
    b = web.submit(
        "talk", "-p", "path=/nonexistent", "-p", "line=b", "--draft",
        "--start", iso_in(60 * day), "--name", f"hay-{uid}",
    )  # fmt: skip
    return {"a": a, "b": b, "uid": uid, "middle": iso_in(45 * day)}


FILTERS = [
    ("workflow", lambda f: "talk", "b", "a"),
    ("asset", lambda f: f"fa-{f['uid']}", "a", "b"),
    ("resource", lambda f: "enc-2", "a", "b"),
    ("since", lambda f: f["middle"], "b", "a"),
    ("until", lambda f: f["middle"], "a", "b"),
    ("search", lambda f: f"needle-{f['uid']}", "a", "b"),
]


@pytest.mark.parametrize(
    ("field", "value", "shown", "hidden"), FILTERS, ids=[f[0] for f in FILTERS]
)
def test_each_filter(
    page: Page, filtered: dict[str, Any], field: str, value: Any, shown: str, hidden: str
) -> None:
    page.goto("/")
    expect(row(page, filtered["a"]["id"])).to_be_visible()
    page.get_by_role("search", name="filters").get_by_label(field, exact=True).fill(value(filtered))
    page.get_by_role("button", name="apply filters").click()
    expect(row(page, filtered[shown]["id"])).to_be_visible()
    expect(row(page, filtered[hidden]["id"])).to_have_count(0)
    assert f"{field}=" in page.url


# --------------------------------------------------------------------------- one job


def test_a_jobs_steps_history_and_log_follow_it_live(page: Page, web: WebDaemon) -> None:
    go = web.base / f"go-{uuid.uuid4().hex[:6]}"
    job = web.submit("talk", "-p", f"path={go}", "-p", "line=said-live", "--name", "talker")
    e2e.wait_until(lambda: web.job(job["id"])["state"] == "running", what="talker running")
    page.goto(f"/jobs/{job['id']}")
    detail = page.locator(f'section[data-job-id="{job["id"]}"]')
    expect(detail).to_have_attribute("data-state", "running")
    steps = page.get_by_role("table", name="steps")
    expect(steps.locator('tr[data-step="wait"]')).to_have_attribute("data-state", "running")
    expect(steps.locator('tr[data-step="say"]')).to_have_attribute("data-state", "queued")
    history = page.get_by_role("table", name="history")
    expect(history.locator('tr[data-to="running"]')).to_have_count(1)
    expect(page.get_by_role("log", name="log")).not_to_contain_text("said-live")
    go.touch()
    expect(detail).to_have_attribute("data-state", "completed")
    expect(steps.locator('tr[data-step="say"]')).to_have_attribute("data-state", "completed")
    expect(steps.locator('tr[data-step="say"]')).to_contain_text("said-live")  # its outputs
    expect(history.locator('tr[data-to="completed"]')).to_have_count(1)
    expect(page.get_by_role("log", name="log")).to_contain_text("said-live")
    toolbar = page.get_by_role("toolbar", name="operations")
    expect(toolbar.get_by_role("button", name="resubmit")).to_be_visible()
    expect(toolbar.get_by_role("button", name="cancel", exact=True)).to_have_count(0)


def test_edit_of_a_confirmed_job(page: Page, web: WebDaemon) -> None:
    job = web.submit("demo", "-p", "who=e", "--start", "+3h", "--name", "to-edit")
    assert job["state"] == "confirmed"
    page.goto(f"/jobs/{job['id']}")
    page.get_by_role("button", name="edit").click()
    form = page.get_by_role("form", name="edit job")
    form.get_by_label("priority").fill("7")
    form.get_by_label("name").fill("edited-by-page")
    form.get_by_role("button", name="save").click()
    expect(page.get_by_text("saved")).to_be_visible()
    expect(page.locator('dd[data-field="priority"]')).to_have_text("7")
    expect(page.locator("h1 .job-name")).to_have_text("edited-by-page")
    shown = web.job(job["id"])
    assert (shown["priority"], shown["name"], shown["state"]) == (7, "edited-by-page", "confirmed")
    assert shown["params"] == {"who": "e"}  # fields not changed were not sent


def test_an_edit_the_daemon_refuses_is_reported(page: Page, web: WebDaemon) -> None:
    job = web.submit("demo", "-p", "who=e", "--start", "+3h", "--name", "bad-edit")
    page.goto(f"/jobs/{job['id']}")
    page.get_by_role("button", name="edit").click()
    page.get_by_role("form", name="edit job").get_by_label("start at").fill("2026-13-45")
    page.get_by_role("button", name="save").click()
    expect(page.get_by_role("alert")).to_contain_text("start_at")
    assert web.job(job["id"])["start_at"] == job["start_at"]


# --------------------------------------------------------------------------- timeline


def test_the_timeline_shows_a_booking_at_its_time_with_preroll_and_postroll(
    page: Page, web: WebDaemon
) -> None:
    start = int(time.time()) + 3600
    job = web.submit(
        "demo", "-p", "who=tl", "--tentative", "--resource", "studio-a",
        "--start", iso_at(start), "--end", iso_at(start + 1800),
        "--preroll", "600", "--postroll", "300", "--name", "on-the-timeline",
    )  # fmt: skip
    view_from = start - 7200
    page.goto(f"/timeline?zoom=day&from={iso_at(view_from)}")
    bar = timeline_bar(page, "studio-a", job["id"])
    expect(bar).to_have_attribute("data-state", "tentative")
    expect(bar).to_contain_text("on-the-timeline")
    day = 86400
    left = float(bar.evaluate("b => parseFloat(b.style.left)"))
    width = float(bar.evaluate("b => parseFloat(b.style.width)"))
    assert left == pytest.approx((start - 600 - view_from) / day * 100, abs=0.01)
    assert width == pytest.approx((1800 + 900) / day * 100, abs=0.01)
    pre = float(bar.locator(".pre").evaluate("p => parseFloat(p.style.width)"))
    post = float(bar.locator(".post").evaluate("p => parseFloat(p.style.width)"))
    assert pre == pytest.approx(600 / 2700 * 100, abs=0.1)
    assert post == pytest.approx(300 / 2700 * 100, abs=0.1)
    expect(page.locator(".now-line")).to_be_visible()
    # The pool groups its members; studio-a is in no pool.
    expect(page.locator(".tl-pool", has_text="pool encoders")).to_be_visible()
    # By mouse: Escape drops the keyboard's pick; the pointer over the drawing lays the
    # link there again, and a click opens the job.
    box = bar.bounding_box()
    assert box is not None
    page.keyboard.press("Escape")
    expect(bar).to_have_count(0)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(bar).to_be_visible()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page).to_have_url(re.compile(rf"/jobs/{job['id']}$"))
    expect(page.locator(f'section[data-job-id="{job["id"]}"]')).to_be_visible()


def test_the_timeline_zooms(page: Page, web: WebDaemon) -> None:
    page.goto("/timeline")
    for zoom in ["hour", "week", "day"]:
        page.get_by_role("button", name=zoom, exact=True).click()
        expect(page.get_by_role("button", name=zoom, exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        assert f"zoom={zoom}" in page.url


# --------------------------------------------------------------------------- queue


def test_the_queue_shows_a_lock_holder_and_its_waiters_in_order(page: Page, web: WebDaemon) -> None:
    asset = f"tape-{uuid.uuid4().hex[:6]}"
    go = web.base / f"go-{asset}"
    jobs = [
        web.submit("hold", "-p", f"path={go}", "--asset", asset, "--name", f"{asset}-{n}")
        for n in range(3)
    ]
    try:
        e2e.wait_until(
            lambda: (
                [web.job(j["id"])["state"] for j in jobs]
                == ["running", "waiting-for-lock", "waiting-for-lock"]
            ),
            what="one holder, two waiters",
        )
        page.goto("/queue")
        lock = page.locator(f'section.lock[data-asset="{asset}"]')
        expect(lock.locator('[data-role="holder"]')).to_have_attribute(
            "data-job-id", str(jobs[0]["id"])
        )
        waiters = lock.locator('[data-role="waiter"]')
        expect(waiters).to_have_count(2)
        for position, job in enumerate(jobs[1:], start=1):
            waiter = waiters.nth(position - 1)
            expect(waiter).to_have_attribute("data-job-id", str(job["id"]))
            expect(waiter).to_have_attribute("data-position", str(position))
            expect(waiter).to_contain_text(re.compile(r"waited \d+s"))
        expect(page.locator('[data-count="waiting-for-lock"] .value')).not_to_have_text("0")
        go.touch()
        expect(lock).to_have_count(0)  # live: the queue empties without a reload
    finally:
        go.touch()


# --------------------------------------------------------------------------- other pages


def test_schedules_run_pause_and_resume(page: Page, web: WebDaemon) -> None:
    page.goto("/schedules")
    line = page.locator('tr[data-schedule="new-year"]')
    expect(line).to_have_attribute("data-schedule-state", "active")
    line.get_by_role("button", name="pause").click()
    expect(line).to_have_attribute("data-schedule-state", "paused")
    line.get_by_role("button", name="resume").click()
    expect(line).to_have_attribute("data-schedule-state", "active")
    line.get_by_role("button", name="run").click()
    fired = page.get_by_role("status").get_by_role("link", name=re.compile(r"job \d+"))
    expect(fired).to_be_visible()
    job_id = int(fired.inner_text().split()[1])
    assert web.job(job_id)["schedule"] == "new-year"


def test_plugins_and_nodes_pages(page: Page, web: WebDaemon) -> None:
    page.goto("/plugins")
    actions = page.get_by_role("table", name="actions")
    expect(actions.locator('tr[data-action="e2e_echo"]')).to_be_visible()
    page.goto("/nodes")
    # On SQLite the daemon is its own single node, up.
    expect(page.locator(".single-node")).to_contain_text("single node")
    node = page.get_by_role("table", name="nodes").locator("tr[data-node]")
    expect(node).to_have_count(1)
    expect(node).to_have_attribute("data-node-state", "up")


# --------------------------------------------------------------------------- batch


def test_batch_cancel_of_selected_jobs_with_a_report_of_refusals(
    page: Page, web: WebDaemon
) -> None:
    drafts = [web.submit("demo", "-p", "who=b", "--draft", "--name", f"sel-{n}") for n in range(2)]
    finished = web.submit("demo", "-p", "who=b", "--name", "sel-done")
    e2e.wait_until(lambda: web.job(finished["id"])["state"] == "completed", what="completed")
    page.goto("/")
    for job in [*drafts, finished]:
        page.get_by_role("checkbox", name=f"select job {job['id']}").check()
    toolbar = page.get_by_role("toolbar", name="batch operations")
    expect(toolbar).to_contain_text("3 selected")
    toolbar.get_by_role("button", name="cancel", exact=True).click()
    page.get_by_role("button", name="yes, cancel").click()
    report = page.get_by_role("status", name="batch report")
    expect(report).to_contain_text("cancel: 2 done, 1 refused")
    refused = report.locator(f'li[data-job-id="{finished["id"]}"]')
    expect(refused).to_contain_text("completed")
    for job in drafts:
        expect(row(page, job["id"])).to_have_attribute("data-state", "canceled")
        shown = web.job(job["id"])
        assert shown["state"] == "canceled"
        assert shown["history"][-1]["actor"] == "web:default"
    assert web.job(finished["id"])["state"] == "completed"


def test_batch_cancel_of_all_that_match_the_filter(page: Page, web: WebDaemon) -> None:
    uid = uuid.uuid4().hex[:8]
    matching = [
        web.submit("demo", "-p", "who=m", "--draft", "--name", f"match-{uid}-{n}") for n in range(3)
    ]
    other = web.submit("demo", "-p", "who=m", "--draft", "--name", f"other-{uid}")
    page.goto(f"/?search=match-{uid}")
    expect(row(page, matching[0]["id"])).to_be_visible()
    toolbar = page.get_by_role("toolbar", name="batch operations")
    toolbar.get_by_label("all that match the filter").check()
    expect(toolbar).to_contain_text("all jobs that match the filter")
    toolbar.get_by_role("button", name="cancel", exact=True).click()
    page.get_by_role("button", name="yes, cancel").click()
    expect(page.get_by_role("status", name="batch report")).to_contain_text("3 done, 0 refused")
    for job in matching:
        expect(row(page, job["id"])).to_have_attribute("data-state", "canceled")
    assert web.job(other["id"])["state"] == "draft"


def test_all_that_match_needs_a_filter(page: Page, web: WebDaemon) -> None:
    page.goto("/")
    toolbar = page.get_by_role("toolbar", name="batch operations")
    expect(toolbar.get_by_label("all that match the filter")).to_be_disabled()


# --------------------------------------------------------------------------- roles


def test_a_viewer_is_offered_no_operation(browser: Browser, web: WebDaemon) -> None:
    draft = web.submit("demo", "-p", "who=v", "--draft", "--name", "for-the-wall")
    context = browser.new_context(base_url=web.url)
    context.add_init_script(f"sessionStorage.setItem('jobd.token', {VIEWER_TOKEN!r})")
    try:
        tab = context.new_page()
        tab.goto("/")
        expect(tab.locator("#who")).to_have_text("wall · viewer")
        tab.get_by_role("checkbox", name=f"select job {draft['id']}").check()
        toolbar = tab.get_by_role("toolbar", name="batch operations")
        expect(toolbar).to_contain_text("1 selected")
        expect(toolbar.locator("button.op")).to_have_count(0)
        tab.goto(f"/jobs/{draft['id']}")
        expect(tab.locator(f'section[data-job-id="{draft["id"]}"]')).to_be_visible()
        expect(tab.get_by_role("toolbar", name="operations").get_by_role("button")).to_have_count(0)
        expect(tab.get_by_role("button", name="edit")).to_have_count(0)
        tab.goto("/schedules")
        expect(tab.locator('tr[data-schedule="new-year"]')).to_be_visible()
        expect(tab.locator('tr[data-schedule="new-year"] button')).to_have_count(0)
    finally:
        context.close()
