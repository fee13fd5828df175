"""Crash recovery: the engine in a child process is SIGKILLed mid-work, then reopened."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from jobd.core.states import JobState, StepState
from tests.crash_child import crash_config
from tests.enginekit import pid_gone, running_engine, wait_all, wait_state, wait_until

S = JobState
ROOT = Path(__file__).parent.parent


def _recorded_pgids(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            return int(
                conn.execute("SELECT count(*) FROM steps WHERE pgid IS NOT NULL").fetchone()[0]
            )
        except sqlite3.OperationalError:  # schema not created yet
            return 0


def _written_pid(path: Path) -> bool:
    """The shell has written its whole pid line (it creates the file before it writes it)."""
    try:
        return path.read_text().endswith("\n")
    except FileNotFoundError:
        return False


async def test_kill_9_loses_nothing_and_completed_steps_do_not_rerun(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Job a holds asset A inside its second step; c is in its only step; b waits for A.
        # Kill only once both step processes' groups are durably recorded and both processes
        # have written their pid files: the group is recorded at the spawn, before the shell
        # runs its first line, so on a loaded machine the files can lag behind it.
        await wait_until(
            lambda: (
                _recorded_pgids(tmp_path / "jobd.db") == 2
                and all(_written_pid(tmp_path / f"{n}.pid") for n in ("a", "c"))
            ),
            timeout=30,
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    orphans = [int((tmp_path / f"{n}.pid").read_text()) for n in ("a", "c")]
    assert all(not pid_gone(pid) for pid in orphans)  # the step processes outlived the daemon

    (tmp_path / "a.pid").unlink()
    async with running_engine(crash_config(tmp_path)) as engine:
        # Recovery killed the orphans' groups before retrying anything.
        for pid in orphans:
            await wait_until(lambda pid=pid: pid_gone(pid), timeout=15)
        c = await wait_state(engine, 3, {S.FAILED, S.COMPLETED})
        assert c.state == S.FAILED and c.error is not None and c.error.code == "interrupted"
        await wait_until((tmp_path / "a.pid").exists, timeout=15)  # a's retry started
        (tmp_path / "gate").write_text("open")
        a, b = await wait_all(engine, [1, 2])
    assert a.state == S.COMPLETED and b.state == S.COMPLETED
    assert a.steps[1].attempts == 2 and a.steps[1].state == StepState.COMPLETED
    assert a.error is None  # the interrupted overlay cleared when the run completed
    starts = [
        json.loads(line)["job"]
        for line in (tmp_path / "steps.log").read_text().splitlines()
        if json.loads(line)["ev"] == "start"
    ]
    assert starts.count(1) == 1  # a's completed first step did not run again
    assert starts.count(2) == 1
    causes = [h.cause for h in a.history]
    assert any("interrupted" in c for c in causes)
