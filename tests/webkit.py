"""Helpers for the browser tests: one real daemon on TCP with a token, and Debian's Chromium
driven by Playwright for Python (its own browser download cannot work on these machines).

Not a test module. The daemon and the browser are started once per session
(``tests/test_web*.py`` share them through fixtures in those modules); each
test opens its own browser context, so tabs, sessionStorage and dialogs never
leak between tests.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests import e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "web-test-token-5b1f"
#: Upper bound (ms) for anything a browser test waits for: Playwright polls the condition
#: until then. Generous, because the machine running the suite may be loaded: it only
#: matters when a test fails.
WAIT_MS = 60_000

WORKFLOWS = (
    e2e.DEMO_WORKFLOWS
    + """
[workflows.talk]
steps = [
  { name = "wait", action = "e2e_wait_file", params = { path = "{path}" } },
  { name = "say", action = "e2e_echo", params = { line = "{line}" } },
]

[resources.enc-1]
[resources.enc-2]
[resources.studio-a]

[pools.encoders]
members = ["enc-1", "enc-2"]

[[schedules]]
name = "new-year"
workflow = "demo"
cron = "0 3 1 1 *"
timezone = "UTC"
params = { who = "schedule" }
"""
)


@dataclass
class WebDaemon:
    """The real daemon, with the URL and token a browser uses."""

    daemon: e2e.Daemon
    url: str
    token: str

    @property
    def base(self) -> Path:
        return self.daemon.layout.base

    def submit(self, workflow: str, *args: str) -> dict[str, Any]:
        """``jobd submit ... --json`` through the real CLI; the job as the API returns it."""
        done = self.daemon.cli("submit", workflow, *args, "--json")
        assert done.returncode == 0, done.stderr
        job: dict[str, Any] = json.loads(done.stdout)
        return job

    def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = self.daemon.cli_json("show", str(job_id))
        return job

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli(*args)


def launch_options() -> dict[str, Any]:
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def timeline_bar(page: Page, resource: str, job_id: int) -> Locator:
    """The link of job ``job_id``'s bar in ``resource``'s timeline row, picked as a keyboard
    user would: focus the row's drawing, then the arrow key until that bar is picked."""
    row = page.locator(f'.tl-row[data-resource="{resource}"]')
    bar = row.locator(f'a.bar[data-job-id="{job_id}"]')
    row.locator("canvas").focus()
    count = int(row.get_attribute("data-bookings") or 0)
    for _ in range(count):
        page.keyboard.press("ArrowRight")
        if bar.count():
            break
    expect(bar).to_be_focused()
    return bar


def held(web: WebDaemon, name: str) -> tuple[dict[str, Any], Path]:
    """A running ``hold`` job and the file that lets it finish."""
    go = web.base / f"go-{name}"
    job = web.submit("hold", "-p", f"path={go}", "--name", name)
    e2e.wait_until(lambda: web.job(job["id"])["state"] == "running", what=f"{name} running")
    return job, go


def iso_at(when: float) -> str:
    """``when`` (POSIX seconds) as the CLI takes it: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
