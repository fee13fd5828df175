"""``jobd logs -f`` and the log on the event stream (``GET /v1/events?job=ID&log=true``),
through the real daemon and the real CLI (subprocesses).

The job is ``e2e_talk``: one step that logs a line, waits for a file the test
creates, logs another and waits again. The second line is written in the
middle of the step, with no event of the job around it: ``logs -f`` has it
only because the daemon publishes it. Nothing sleeps: lines are awaited with
deadlines on a reader thread.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobd.client.remote import ApiError, Client, Endpoint
from tests import e2e

WORKFLOWS = (
    e2e.DEMO_WORKFLOWS
    + """
[workflows.talking]
steps = [ { name = "talk", action = "e2e_talk", params = { path = "{path}" } } ]
"""
)
#: Only an upper bound: a loaded machine is slow, a healthy run takes a fraction of it.
DEADLINE = 60.0


@pytest.fixture(scope="module")
def daemon() -> Iterator[e2e.Daemon]:
    with e2e.running_daemon(workflows=WORKFLOWS) as running:
        yield running


def submit(daemon: e2e.Daemon, *args: str) -> int:
    done = daemon.cli("submit", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def state(daemon: e2e.Daemon, job_id: int) -> str:
    return str(daemon.cli_json("show", str(job_id))["state"])


def reader(items: Iterator[Any]) -> queue.Queue[Any]:
    """``items`` read on a daemon thread into a queue (``None`` at the end), so the test
    waits for each with a deadline instead of blocking on a stream."""
    inbox: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for item in items:
                inbox.put(item)
        except Exception:  # the test closed the stream: its end, like any other
            pass
        inbox.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return inbox


def next_matching(inbox: queue.Queue[Any], wanted: str, seen: list[Any]) -> Any:
    """The first item whose text contains ``wanted`` (each one read is kept in ``seen``)."""
    while True:
        item = inbox.get(timeout=DEADLINE)
        assert item is not None, f"ended before {wanted!r}: {seen}"
        seen.append(item)
        if wanted in str(item):
            return item


def test_logs_follow_prints_a_line_written_mid_step_then_ends(
    daemon: e2e.Daemon, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = submit(daemon, "talking", "-p", f"path={gate}")
    e2e.wait_until(lambda: state(daemon, job_id) == "running", what="job running")
    env = e2e.jobd_env(JOBD_SOCKET=str(daemon.layout.socket))
    follow = subprocess.Popen(
        [sys.executable, "-m", "jobd", "logs", str(job_id), "-f", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = reader(iter(follow.stdout.readline, ""))  # type: ignore[union-attr]
        seen: list[str] = []
        next_matching(lines, "before the gate", seen)
        gate.write_text("go")
        past = json.loads(next_matching(lines, "past the gate", seen))
        assert past["step"] == "talk" and past["level"] == "info" and past["seq"] > 0
        assert state(daemon, job_id) == "running"  # it came while the step went on
        Path(f"{gate}.end").write_text("go")
        out, err = follow.communicate(timeout=DEADLINE)
    finally:
        follow.kill()
        follow.wait()
    assert follow.returncode == 0, err
    assert state(daemon, job_id) == "completed"
    printed = [json.loads(line) for line in seen + out.splitlines()]
    seqs = [line["seq"] for line in printed]
    assert seqs == sorted(set(seqs))  # each line once, in order
    assert printed == daemon.cli_json("logs", str(job_id))["items"]  # all of them


def test_the_event_stream_carries_the_log_past_after(daemon: e2e.Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job_id = submit(daemon, "talking", "-p", f"path={gate}")
    first: list[dict[str, Any]] = []

    def first_line_written() -> bool:
        first[:] = daemon.cli_json("logs", str(job_id))["items"]
        return any(line["message"].startswith("before the gate") for line in first)

    e2e.wait_until(first_line_written, what="the first line")
    after = int(first[-1]["seq"])
    client = Client(Endpoint(socket=str(daemon.layout.socket)))
    with client, client.events(job_id, log_after=after) as events:
        inbox = reader(events)
        gate.write_text("go")
        seen: list[dict[str, Any]] = []
        event = next_matching(inbox, "past the gate", seen)
        Path(f"{gate}.end").write_text("go")
        done = next_matching(inbox, "'to': 'completed'", seen)
    assert event["kind"] == "log" and event["job_id"] == job_id and event["step"] == "talk"
    assert event["data"]["seq"] > after and event["data"]["level"] == "info"
    logged = [e for e in seen if e["kind"] == "log"]
    assert all(e["data"]["seq"] > after for e in logged)  # nothing at or before ``after``
    assert seen.index(event) < seen.index(done)  # the lines come before the end


def test_the_log_stream_names_its_job(daemon: e2e.Daemon) -> None:
    with Client(Endpoint(socket=str(daemon.layout.socket))) as client:
        with pytest.raises(ApiError) as no_job, client.events(None, log_after=0):
            pass
        with pytest.raises(ApiError) as unknown, client.events(987654, log_after=0):
            pass
    assert no_job.value.status == 400 and "job=ID" in no_job.value.message
    assert unknown.value.status == 404


def test_a_followed_log_whose_job_is_deleted_ends_with_the_deleted_event(
    daemon: e2e.Daemon,
) -> None:
    job_id = submit(daemon, "demo", "-p", "who=draft", "--draft")
    client = Client(Endpoint(socket=str(daemon.layout.socket)))
    with client, client.events(job_id, log_after=0) as events:
        inbox = reader(events)
        assert daemon.cli("delete", str(job_id)).returncode == 0
        seen: list[dict[str, Any]] = []
        deleted = next_matching(inbox, "'kind': 'deleted'", seen)
    assert deleted["job_id"] == job_id
