"""The real ``jobd`` CLI against the real daemon (a subprocess each): what an operator sees.

Issue 9's command-line items and issue 11's CLI. Readiness comes from the
daemon's READY=1 (tests/e2e.py); a job is held running by ``hold``, which
waits for a file the test creates, so nothing here sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import e2e


@pytest.fixture(scope="module")
def shared() -> Iterator[e2e.Daemon]:
    """One daemon for tests that only add jobs of their own (start-up costs ~1 s)."""
    with e2e.running_daemon() as daemon:
        yield daemon


def submit(daemon: e2e.Daemon, *args: str) -> int:
    done = daemon.cli("submit", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def wait_state(daemon: e2e.Daemon, job_id: int, *states: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(daemon.cli_json("show", str(job_id)))
        return seen.get("state") in states

    e2e.wait_until(reached, what=f"job {job_id} in {states}")
    return seen


def release(path: Path) -> None:
    path.write_text("go")


# --------------------------------------------------------------------------- issue 9 item 4


def test_locks_show_when_a_waiter_started_waiting_as_a_wall_clock_time(
    shared: e2e.Daemon, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    before = time.time()
    holder = submit(shared, "hold", "-p", f"path={gate}", "--asset", "tape-4")
    wait_state(shared, holder, "running")
    waiter = submit(shared, "hold", "-p", f"path={gate}", "--asset", "tape-4")
    wait_state(shared, waiter, "waiting-for-lock")
    after = time.time()
    from jobd.timefmt import parse_time

    locks = {lock["asset"]: lock for lock in shared.cli_json("locks")["items"]}
    (entry,) = locks["tape-4"]["waiters"]
    assert entry["job_id"] == waiter
    assert before - 1 <= parse_time(entry["since"]) <= after + 1, entry
    table = shared.cli("locks").stdout
    assert "1970" not in table and f"{waiter}:exclusive since" in table
    release(gate)
    wait_state(shared, waiter, "completed")
