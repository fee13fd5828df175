"""Issue 9, item 2, as an operator saw it: with 4 workers, 4 live windows must not keep a
plain job queued. The real daemon and the real CLI; then a restart with the windows open."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from tests import e2e

WINDOWS = 4  # as many as the daemon has workers (tests/e2e.py: workers = 4)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _live(daemon: e2e.Daemon) -> int:
    return int(daemon.cli_json("queue").get("live_windows", 0))


def test_live_windows_leave_the_workers_to_plain_jobs_and_survive_a_restart(base: Path) -> None:
    start = time.time()
    with e2e.running_daemon(base) as daemon:
        for i in range(WINDOWS):
            done = daemon.cli(
                "submit", "demo", "-p", f"who=w{i}", "--start", _iso(start),
                "--end", _iso(start + 3600),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        e2e.wait_until(lambda: _live(daemon) == WINDOWS, what="the windows open")
        plain = daemon.cli("submit", "demo", "-p", "who=plain", "--wait", timeout=60)
        assert plain.returncode == 0, plain.stderr
        assert daemon.cli_json("show", plain.stdout.strip())["state"] == "completed"
        queue = daemon.cli_json("queue")
        assert queue["busy_workers"] == 0 and len(queue["running"]) == WINDOWS
    # Stopped with the windows open (the daemon exited 0): they are back, still running.
    with e2e.running_daemon(base) as daemon:
        e2e.wait_until(lambda: _live(daemon) == WINDOWS, what="the windows reopened")
        listed = daemon.cli_json("list", "--state", "running")["items"]
        assert len(listed) == WINDOWS
        first = str(listed[-1]["id"])
        stopped = daemon.cli("stop", first)
        assert stopped.returncode == 0, stopped.stderr
        e2e.wait_until(
            lambda: daemon.cli_json("show", first)["state"] == "completed", what="stopped"
        )
        assert _live(daemon) == WINDOWS - 1
