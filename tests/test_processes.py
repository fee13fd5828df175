"""run_process and process-group killing, with real subprocesses.

Nothing here synchronises with sleep: tests wait for a file or a log line the
child writes (polling with a deadline), and a timeout is made to fire by
moving a scope's deadline to "now" once the child is ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from jobd.core.errors import ActionError
from jobd.plugin.processes import (
    TAIL_BYTES,
    ProcessResult,
    ProcessStartError,
    kill_process_group,
    process_group_alive,
    run_process,
)
from tests.conftest import ListLog, read_pid
from tests.enginekit import pid_gone, wait_until

PY = sys.executable


def grandchild_argv(pidfile: Path, leader_waits: bool = True) -> list[str]:
    """sh that backgrounds ``sleep 1000`` and publishes its pid atomically."""
    wait = "; wait" if leader_waits else ""
    script = f'sleep 1000 & echo $! > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"{wait}'
    return ["sh", "-c", script]


async def expire_when(ready: Callable[[], bool], scope: anyio.CancelScope) -> None:
    """Make ``scope``'s deadline pass as soon as the child is ready: a timeout, on cue."""
    await wait_until(ready)
    scope.deadline = anyio.current_time()


class PgidRecorder:
    def __init__(self) -> None:
        self.calls: list[int | None] = []

    async def __call__(self, pgid: int | None) -> None:
        self.calls.append(pgid)


async def run(argv: list[str], **kw: Any) -> ProcessResult:
    kw.setdefault("kill_grace", 2.0)
    kw.setdefault("log", ListLog())
    return await run_process(argv, **kw)


# ------------------------------------------------------------------ normal runs


async def test_exit_code_output_and_log_lines() -> None:
    log = ListLog()
    code = "import sys; print('one'); print('two'); print('oops', file=sys.stderr); sys.exit(3)"
    result = await run([PY, "-c", code], log=log, check=False)
    assert result.exit_code == 3
    assert not result.ok
    assert result.stdout == "one\ntwo\n"
    assert result.stderr == "oops\n"
    assert result.pid > 0
    assert result.argv == (PY, "-c", code)
    assert log.lines("stdout") == ["one", "two"]
    assert log.lines("stderr") == ["oops"]


async def test_check_raises_action_error_with_exit_code_and_last_stderr_line() -> None:
    code = (
        "import sys; print('out'); print('first', file=sys.stderr); "
        "print('disk full', file=sys.stderr); sys.exit(7)"
    )
    with pytest.raises(ActionError) as info:
        await run([PY, "-c", code])
    assert str(info.value) == f"{PY} exited with 7: disk full"
    assert info.value.details["exit_code"] == 7
    assert info.value.details["stdout"] == "out\n"


async def test_success_with_check_returns_result() -> None:
    result = await run(["true"])
    assert result.exit_code == 0
    assert result.ok


async def test_stdin_is_fed_then_closed_and_absent_stdin_is_empty() -> None:
    code = "import sys; data = sys.stdin.buffer.read(); print(len(data), data[:5].decode())"
    fed = await run([PY, "-c", code], stdin=b"hello" * 1000)
    assert fed.stdout == "5000 hello\n"
    empty = await run([PY, "-c", code])
    assert empty.stdout == "0 \n"


async def test_unread_stdin_is_not_an_error() -> None:
    result = await run(["true"], stdin=b"x" * (1024 * 1024))
    assert result.exit_code == 0


async def test_env_is_merged_over_the_daemon_environment(tmp_path: Path) -> None:
    code = "import os; print(os.environ['JOBD_T'], os.environ['PATH'] == os.environ['P0'])"
    result = await run(
        [PY, "-c", code], env={"JOBD_T": "x y", "P0": os.environ["PATH"]}, cwd=tmp_path
    )
    assert result.stdout == "x y True\n"
    where = await run([PY, "-c", "import os; print(os.getcwd())"], cwd=tmp_path)
    assert where.stdout.strip() == str(tmp_path)


async def test_stdout_tail_is_bounded_to_64_kib() -> None:
    # 1 MiB of numbered 64-byte lines, then a marker: only the end is kept.
    code = (
        "import sys\n"
        "for i in range(16384): sys.stdout.write(f'{i:063d}\\n')\n"
        "sys.stdout.write('END\\n')\n"
    )
    log = ListLog()
    result = await run([PY, "-c", code], log=log)
    assert len(result.stdout.encode()) == TAIL_BYTES
    assert result.stdout.endswith(f"{16383:063d}\nEND\n")
    assert len(log.lines("stdout")) == 16385


async def test_tail_cut_never_splits_a_utf8_character() -> None:
    # 3-byte characters after one ASCII byte: the 64 KiB cut lands mid-character.
    code = "import sys; sys.stdout.write('x' + '\u20ac' * 30000)"
    assert (1 + 3 * 30000 - TAIL_BYTES - 1) % 3 != 0
    result = await run([PY, "-c", code])
    assert "\ufffd" not in result.stdout
    assert set(result.stdout) == {"\u20ac"}


async def test_a_line_without_newline_is_logged_in_bounded_pieces() -> None:
    log = ListLog()
    await run([PY, "-c", "import sys; sys.stdout.write('a' * 40000)"], log=log)
    pieces = log.lines("stdout")
    assert "".join(pieces) == "a" * 40000
    assert len(pieces) > 1


async def test_log_event_and_fields_are_configurable() -> None:
    log = ListLog()
    await run(["echo", "hi"], log=log, log_event="script output", log_fields={"script": "s"})
    assert (
        "info",
        "script output",
        {"script": "s", "stream": "stdout", "line": "hi"},
    ) in log.records


@pytest.mark.parametrize("argv", ["ls -l", [], ["ls", 1], b"ls"])
async def test_argv_must_be_a_non_empty_list_of_strings(argv: Any) -> None:
    with pytest.raises(ValueError, match="argv"):
        await run(argv)


async def test_missing_program_raises_process_start_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessStartError, match="cannot start") as info:
        await run([str(tmp_path / "nope")], check=False)
    assert isinstance(info.value, ActionError)


# ------------------------------------------------------------------ stopping


async def test_leftover_grandchild_is_killed_when_the_leader_exits(pidfile: Path) -> None:
    result = await run(grandchild_argv(pidfile, leader_waits=False))
    assert result.exit_code == 0
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    await wait_until(lambda: pid_gone(grandchild))


async def test_fail_after_kills_the_grandchild(pidfile: Path) -> None:
    pgids = PgidRecorder()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(60) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(expire_when, pidfile.exists, scope)
                await run(grandchild_argv(pidfile), on_pgid=pgids)
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    await wait_until(lambda: pid_gone(grandchild))
    assert len(pgids.calls) == 2 and pgids.calls[1] is None
    leader = pgids.calls[0]
    assert leader is not None
    assert not process_group_alive(leader)


async def test_timeout_parameter_kills_the_grandchild_and_reports_it(pidfile: Path) -> None:
    result = await run(grandchild_argv(pidfile), timeout=1.5, check=False)
    assert result.timed_out
    assert result.exit_code == -signal.SIGTERM
    grandchild = read_pid(pidfile)
    assert grandchild is not None, "the child had not started its grandchild within the timeout"
    await wait_until(lambda: pid_gone(grandchild))


async def test_timeout_parameter_with_check_raises() -> None:
    with pytest.raises(ActionError, match=r"timed out after 0\.5 s") as info:
        await run(["sleep", "1000"], timeout=0.5)
    assert info.value.details["timed_out"] is True


async def test_cancel_kills_group_and_reports_pgid_then_none(pidfile: Path) -> None:
    pgids = PgidRecorder()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(expire_when, pidfile.exists, scope)
            await run(grandchild_argv(pidfile), on_pgid=pgids)
    assert scope.cancelled_caught
    leader = pgids.calls[0]
    assert leader is not None and pgids.calls == [leader, None]
    assert pid_gone(leader)
    grandchild = read_pid(pidfile)
    assert grandchild is not None
    await wait_until(lambda: pid_gone(grandchild))


async def test_sigterm_ignored_leads_to_sigkill_after_grace() -> None:
    # The child survives SIGTERM (and says so); only SIGKILL can end it.
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('ignoring TERM', flush=True))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    log, pgids = ListLog(), PgidRecorder()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(expire_when, lambda: "ready" in log.lines(), scope)
            await run([PY, "-c", code], log=log, on_pgid=pgids, kill_grace=0.5)
    assert "ignoring TERM" in log.lines("stdout")  # output during the grace is still logged
    leader = pgids.calls[0]
    assert leader is not None and pid_gone(leader)


async def test_sigterm_ignored_is_sigkilled_under_timeout_parameter() -> None:
    # SIG_IGN survives fork and exec, so the whole group ignores SIGTERM. It is
    # set here, in the parent, not by a ``trap`` in the child: the timeout runs
    # from the start, and on a loaded machine it could fire before a child got
    # round to setting it, and a SIGTERM would then end the group.
    argv = [PY, "-c", "import time\nwhile True: time.sleep(1)"]
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        result = await run(argv, timeout=1.0, kill_grace=0.5, check=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.timed_out
    assert result.exit_code == -signal.SIGKILL


async def test_on_pgid_failure_stops_the_process() -> None:
    started: list[int] = []

    async def refuse(pgid: int | None) -> None:
        if pgid is not None:
            started.append(pgid)
            raise RuntimeError("database is gone")

    with pytest.raises(RuntimeError, match="database is gone"):
        await run(["sleep", "1000"], on_pgid=refuse)
    assert pid_gone(started[0])


# ------------------------------------------------------------------ bare groups


def spawn_detached(argv: list[str]) -> subprocess.Popen[bytes]:
    """A group jobd did not start in this process, as after a daemon crash."""
    return subprocess.Popen(
        argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def test_kill_process_group_kills_a_detached_group(pidfile: Path) -> None:
    leader = spawn_detached(grandchild_argv(pidfile))
    try:
        await wait_until(pidfile.exists)
        assert process_group_alive(leader.pid)
        await kill_process_group(leader.pid, grace=2.0)
        assert not process_group_alive(leader.pid)  # the unreaped leader is a zombie
        grandchild = read_pid(pidfile)
        assert grandchild is not None and pid_gone(grandchild)
    finally:
        leader.kill()
        await anyio.to_thread.run_sync(leader.wait)


async def test_kill_process_group_sigkills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    argv = ["sh", "-c", f"trap '' TERM; touch '{ready}'; exec sleep 1000"]
    leader = spawn_detached(argv)
    try:
        await wait_until(ready.exists)
        await kill_process_group(leader.pid, grace=0.5)
        assert not process_group_alive(leader.pid)
        assert await anyio.to_thread.run_sync(leader.wait) == -signal.SIGKILL
    finally:
        leader.kill()
        await anyio.to_thread.run_sync(leader.wait)


def unused_pgid() -> int:
    """A pgid no process can have: above the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


async def test_kill_process_group_leaves_a_running_step_of_this_daemon_alone(
    pidfile: Path,
) -> None:
    # As if a pgid recorded before a crash had been reused by a current step.
    pgids = PgidRecorder()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run, grandchild_argv(pidfile), on_pgid=pgids))
            # The child can write its pid file while run() is still returning
            # from the start, before it records the group: wait for both.
            await wait_until(lambda: bool(pgids.calls) and pidfile.exists())
            leader = pgids.calls[0]
            assert leader is not None
            await kill_process_group(leader, grace=0.1)
            assert process_group_alive(leader)
            scope.cancel()
    assert leader is not None and not process_group_alive(leader)


async def test_kill_process_group_on_a_vanished_group_is_a_no_op() -> None:
    unused = unused_pgid()
    assert not process_group_alive(unused)
    await kill_process_group(unused, grace=0.1)


@pytest.mark.parametrize("pgid", [0, 1, -5, os.getpgrp()])
async def test_refuses_to_signal_own_or_special_groups(pgid: int) -> None:
    with pytest.raises(ValueError, match="refusing"):
        process_group_alive(pgid)
    with pytest.raises(ValueError, match="refusing"):
        await kill_process_group(pgid, grace=0.1)
