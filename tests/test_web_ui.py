"""``jobd ui`` and the page's reconnection, each with a daemon of its own (they stop it or
relay its socket), in Debian's Chromium driven by Playwright."""

from __future__ import annotations

import re
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests import e2e
from tests.webkit import TOKEN, WAIT_MS

expect.set_options(timeout=WAIT_MS)


def read_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The next line ``proc`` prints, waiting at most ``timeout`` s for it."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            return proc.stdout.readline()
        assert proc.poll() is None, f"jobd ui exited {proc.returncode}"
    raise AssertionError(f"jobd ui printed nothing within {timeout} s")


def test_jobd_ui_serves_the_page_through_the_socket_with_a_one_time_secret(
    browser: Browser,
) -> None:
    with e2e.running_daemon() as daemon:
        job = daemon.cli_json("submit", "demo", "-p", "who=ui", "--name", "seen-through-ui")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobd",
                "ui",
                "--port",
                "0",
                "--socket",
                str(daemon.layout.socket),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=e2e.jobd_env(),
            cwd=e2e.ROOT,
        )
        try:
            match = re.search(r"(http://127\.0\.0\.1:(\d+)/)#secret=([\w-]+)", read_line(proc))
            assert match, "jobd ui did not print its URL"
            origin, port = match.group(1), int(match.group(2))
            context = browser.new_context()
            tab = context.new_page()
            tab.goto(match.group(0))
            expect(tab.locator(f'tr[data-job-id="{job["id"]}"]')).to_be_visible()
            expect(tab.locator("#live")).to_have_text("live")
            assert "secret" not in tab.url  # gone from the address bar and the history
            assert tab.evaluate("sessionStorage.getItem('jobd.token')")
            assert context.cookies() == []
            # The secret worked once: a second tab with the same URL gets no data.
            other = browser.new_context().new_page()
            other.goto(match.group(0))
            expect(other.get_by_role("dialog")).to_be_visible()
            assert other.locator(f'tr[data-job-id="{job["id"]}"]').count() == 0
            # Without the session token: the page's files, no data; a foreign Host: nothing.
            assert httpx.get(origin).status_code == 200
            assert httpx.get(origin + "v1/jobs").status_code == 401
            wrong = httpx.get(origin, headers={"Host": f"attacker.example:{port}"})
            assert wrong.status_code == 421
            again = httpx.post(origin + "ui/session", json={"secret": match.group(3)})
            assert again.status_code == 401
            context.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


def test_jobd_ui_without_a_daemon_exits_3(base: Path) -> None:
    done = e2e.run_cli("ui", "--socket", str(base / "none.sock"))
    assert done.returncode == 3, done.stderr
    assert "cannot reach jobd" in done.stderr


def test_the_page_says_when_the_daemon_is_away_and_reconnects(browser: Browser, base: Path) -> None:
    token = base / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = e2e.free_port()
    layout = e2e.write_layout(
        base, api_extra=f'listen = "127.0.0.1:{port}"\ntoken_file = "{token}"'
    )
    daemon = e2e.start_daemon(layout)
    context = browser.new_context(base_url=f"http://127.0.0.1:{port}")
    context.add_init_script(f"sessionStorage.setItem('jobd.token', {TOKEN!r})")
    context.set_default_timeout(WAIT_MS)
    try:
        tab = context.new_page()
        tab.goto("/")
        live = tab.locator("#live")
        expect(live).to_have_text("live")
        status = daemon.stop()
        assert status == 0, f"jobd exited {status}\n{daemon.log_text()[-3000:]}"
        daemon.notify.close()
        expect(live).to_have_attribute("data-live", "away")
        expect(live).to_contain_text("daemon unreachable")
        daemon = e2e.start_daemon(layout)
        expect(live).to_have_text("live")
        job = daemon.cli_json("submit", "demo", "-p", "who=back", "--name", "after-restart")
        expect(tab.locator(f'tr[data-job-id="{job["id"]}"]')).to_be_visible()
    finally:
        context.close()
        if daemon.alive:
            daemon.stop()
        daemon.notify.close()
