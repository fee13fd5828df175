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


# --------------------------------------------------------------------------- issue 9 items 12, 13


def test_tables_into_a_pipe_are_whole_lines(shared: e2e.Daemon) -> None:
    name = "evening-news-" + "x" * 70
    job_id = submit(shared, "demo", "-p", "who=pipe", "--name", name, "--priority", "7")
    wait_state(shared, job_id, "completed")
    listed = shared.cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout and "┃" not in listed.stdout
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "ID", "NAME", "WORKFLOW", "STATE", "PRI", "START", "END", "PROG", "ERROR"
    ]  # fmt: skip
    (row,) = [line for line in rows if line.split()[:1] == [str(job_id)]]
    assert row.split()[:5] == [str(job_id), name, "demo", "completed", "7"]
    assert len(row) > 100  # longer than any terminal default, and not wrapped
    shown = shared.cli("show", str(job_id)).stdout
    assert name in shown and "…" not in shown


def test_watch_into_a_pipe_prints_one_line_per_event(shared: e2e.Daemon) -> None:
    import signal
    import subprocess
    import sys

    env = e2e.jobd_env(JOBD_SOCKET=str(shared.layout.socket))
    watch = subprocess.Popen(
        [sys.executable, "-m", "jobd", "watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=e2e.ROOT,
    )
    try:
        assert watch.stderr is not None and watch.stdout is not None
        assert "watching events" in watch.stderr.readline()  # subscribed: nothing is missed
        job_id = submit(shared, "demo", "-p", "who=watched")
        lines: list[str] = []
        while not any(f"job {job_id}: running -> completed" in line for line in lines):
            line = watch.stdout.readline()
            assert line, f"watch ended early: {lines}"
            lines.append(line)
        mine = [line for line in lines if f"job {job_id}:" in line]
        assert any("confirmed -> queued" in line for line in mine), mine
        assert any("step hello completed" in line for line in mine), mine
    finally:
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=30)
    assert watch.returncode == 0


# --------------------------------------------------------------------------- issue 9 item 19


def test_list_json_leaves_out_what_a_list_does_not_carry(shared: e2e.Daemon) -> None:
    job_id = submit(shared, "demo", "-p", "who=listed")
    shown = wait_state(shared, job_id, "completed")
    assert shown["steps"] and shown["history"]  # the job has them ...
    (row,) = [job for job in shared.cli_json("list")["items"] if job["id"] == job_id]
    for key in ("steps", "history", "reservations"):
        assert key not in row  # ... and a list row does not pretend they are empty
    assert row["state"] == "completed" and row["params"] == {"who": "listed"}
