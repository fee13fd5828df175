"""The real ``jobd`` CLI against the real daemon (a subprocess each): what an operator sees.

Issue 9's command-line items and issue 11's CLI. Readiness comes from the
daemon's READY=1 (tests/e2e.py); a job is held running by ``hold``, which
waits for a file the test creates, so nothing here sleeps.
"""

from __future__ import annotations

import json
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
    from jobd.core.timefmt import parse_time

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


def _sigint_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
        # A shell that starts the suite in the background leaves SIGINT ignored, and an
        # ignored SIGINT is inherited: the watch must see the Ctrl-C a person would send.
        preexec_fn=_sigint_default,
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


# --------------------------------------------------------------------------- issue 11: the CLI

CUSTOM = (
    e2e.DEMO_WORKFLOWS
    + """
[workflows.gated]
steps = [
  { name = "wait", action = "e2e_wait_file", params = { path = "{path}" } },
  { name = "say", action = "e2e_echo", params = { said = "after the gate" } },
]

[[schedules]]
name = "hourly"
workflow = "demo"
interval = 3600
params = { who = "schedule" }
misfire = "skip"
"""
)


@pytest.fixture(scope="module")
def custom() -> Iterator[e2e.Daemon]:
    with e2e.running_daemon(workflows=CUSTOM) as daemon:
        yield daemon


def names(daemon: e2e.Daemon, *filters: str) -> dict[str, str]:
    """``name -> state`` of the jobs ``jobd list --json FILTERS`` gives."""
    listed = daemon.cli_json("list", "--limit", "1000", *filters)["items"]
    return {job["name"]: job["state"] for job in listed}


def test_list_filters_and_operations_on_every_match(shared: e2e.Daemon) -> None:
    for n in (1, 2, 3):
        submit(shared, "demo", "-p", "who=f", "--draft", "--name", f"filtered-{n}")
    submit(shared, "demo", "-p", "who=f", "--draft", "--name", "other-1", "--asset", "vt-9")
    assert names(shared, "--search", "filtered", "--state", "draft") == {
        "filtered-1": "draft",
        "filtered-2": "draft",
        "filtered-3": "draft",
    }
    assert set(names(shared, "--asset", "vt-9", "--workflow", "demo")) == {"other-1"}
    assert names(shared, "--search", "filtered", "--state", "canceled") == {}
    assert set(names(shared, "--search", "filtered", "--since", "-1h", "--until", "+1h")) == {
        "filtered-1", "filtered-2", "filtered-3"
    }  # fmt: skip

    canceled = shared.cli("cancel", "--search", "filtered-1")
    assert (canceled.returncode, canceled.stdout) == (
        0,
        "cancel: 1 changed, 0 refused, of 1 matching\n",
    )
    confirmed = shared.cli("tentative", "--search", "filtered")
    assert confirmed.returncode == 1  # filtered-1 is canceled: refused, the others go ahead
    assert confirmed.stdout == "tentative: 2 changed, 1 refused, of 3 matching\n"
    assert "cannot tentative a job in state canceled" in confirmed.stderr
    assert names(shared, "--search", "filtered") == {
        "filtered-1": "canceled",
        "filtered-2": "tentative",
        "filtered-3": "tentative",
    }
    nothing = shared.cli("cancel", "--search", "no-job-is-called-this")
    assert (nothing.returncode, nothing.stdout) == (0, "cancel: no job matches; nothing changed\n")
    both = shared.cli("cancel", "1", "--search", "filtered")
    assert both.returncode == 2 and "ids or filters, not both" in both.stderr
    assert shared.cli("cancel", "--search", "filtered", "--state", "tentative").returncode == 0


def test_edit_patches_the_fields_given(shared: e2e.Daemon) -> None:
    job_id = submit(shared, "demo", "-p", "who=a", "-p", "keep=1", "--draft", "--name", "to-edit")
    edited = shared.cli("edit", str(job_id), "-p", "who=b", "--priority", "9", "--asset", "vt-2")
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout == f"job {job_id}: edited (assets, params, priority); draft\n"
    job = shared.cli_json("show", str(job_id))
    assert (job["params"], job["priority"], job["assets"], job["name"]) == (
        {"who": "b", "keep": "1"}, 9, ["vt-2"], "to-edit"
    )  # fmt: skip
    assert shared.cli("edit", str(job_id)).returncode == 2  # nothing to change
    assert shared.cli("cancel", str(job_id)).returncode == 0
    refused = shared.cli("edit", str(job_id), "--priority", "1")
    assert refused.returncode == 1 and "cannot edit a job in state canceled" in refused.stderr


def test_submit_file_sends_json_lines_in_batches(shared: e2e.Daemon, tmp_path: Path) -> None:
    good = tmp_path / "jobs.jsonl"
    lines = [
        json.dumps({"workflow": "demo", "params": {"who": f"f{n}"}, "name": f"from-file-{n}"})
        for n in range(3)
    ]
    good.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n")
    done = shared.cli("submit", "--file", str(good))
    assert done.returncode == 0, done.stderr
    ids = [int(line) for line in done.stdout.split()]
    assert len(ids) == 3 and ids == sorted(ids)
    assert "submitted 3 jobs from" in done.stderr
    assert set(names(shared, "--search", "from-file")) == {f"from-file-{n}" for n in range(3)}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"workflow": "demo", "params": {"who": "x"}, "name": "never-stored-1"})
        + "\n"
        + json.dumps({"workflow": "demo", "name": "never-stored-2", "priority": 5000})
        + "\n"
    )
    refused = shared.cli("submit", "--file", str(bad))
    assert refused.returncode == 1
    assert f"{bad}:2: " in refused.stderr and "priority" in refused.stderr
    assert "nothing of lines 1-2 was stored" in refused.stderr
    assert names(shared, "--search", "never-stored") == {}


def test_submit_file_from_stdin_and_a_line_that_is_not_json(shared: e2e.Daemon) -> None:
    import subprocess
    import sys

    env = e2e.jobd_env(JOBD_SOCKET=str(shared.layout.socket))
    body = json.dumps({"workflow": "demo", "params": {"who": "s"}, "name": "from-stdin"})
    run = [sys.executable, "-m", "jobd", "submit", "--file", "-"]
    done = subprocess.run(
        run, input=body + "\n", capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and len(done.stdout.split()) == 1, done.stderr
    broken = subprocess.run(
        run, input=body + "\n{oops\n", capture_output=True, text=True, env=env, timeout=60
    )
    assert broken.returncode == 1 and "stdin:2: not valid JSON" in broken.stderr


def test_logs_follow_the_event_stream_until_the_end(custom: e2e.Daemon, tmp_path: Path) -> None:
    import subprocess
    import sys

    gate = tmp_path / "gate"
    job_id = submit(custom, "gated", "-p", f"path={gate}")
    wait_state(custom, job_id, "running")
    env = e2e.jobd_env(JOBD_SOCKET=str(custom.layout.socket))
    follow = subprocess.Popen(
        [sys.executable, "-m", "jobd", "logs", str(job_id), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    release(gate)
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert "after the gate" in out  # written after -f started, seen before it ended
    assert custom.cli_json("show", str(job_id))["state"] == "completed"


def test_logs_tail_prints_the_last_lines(shared: e2e.Daemon) -> None:
    job_id = submit(shared, "demo", "-p", "who=tail")
    wait_state(shared, job_id, "completed")
    every = shared.cli("logs", str(job_id)).stdout.splitlines()
    assert len(every) >= 2
    assert shared.cli("logs", str(job_id), "--tail", "1").stdout.splitlines() == every[-1:]
    tail = shared.cli_json("logs", str(job_id), "--tail", "1")["items"]
    assert len(tail) == 1 and tail[0]["message"] in every[-1]


def test_schedules_run_pause_resume(custom: e2e.Daemon) -> None:
    ran = custom.cli("schedules", "run", "hourly")
    assert ran.returncode == 0, ran.stderr
    job_id = int(ran.stdout.split("as job ")[1].split()[0])
    assert custom.cli_json("show", str(job_id))["schedule"] == "hourly"
    paused = custom.cli("schedules", "pause", "hourly")
    assert paused.returncode == 0 and "paused" in paused.stdout
    (hourly,) = custom.cli_json("schedules")["items"]
    assert hourly["paused"] is True
    assert "paused" in custom.cli("schedules").stdout.splitlines()[1]
    resumed = custom.cli("schedules", "resume", "hourly")
    assert resumed.returncode == 0 and "resumed; next firing" in resumed.stdout
    assert custom.cli_json("schedules")["items"][0]["paused"] is False
    unknown = custom.cli("schedules", "run", "no-such-schedule")
    assert unknown.returncode == 1 and "no-such-schedule" in unknown.stderr
    assert custom.cli("schedules", "pause").returncode == 2
