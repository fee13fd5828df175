"""Subprocesses that really stop: own process group, streamed output, group kill.

Every process jobd starts (``ctx.run_process`` in actions, workflow scripts)
goes through :func:`run_process`. The process is the leader of a new session,
so its pid is also its process-group id (pgid) and every descendant that does
not deliberately leave the group can be signalled at once with ``killpg``.
Killing only the leader would leave a backgrounded ``ffmpeg`` or ``sleep``
running after its step ended (see ARCHITECTURE "Known traps").

Stopping a group means: SIGTERM to the whole group, up to ``kill_grace``
seconds for it to leave, then SIGKILL to the whole group. That happens when
the caller's scope is cancelled (step timeout, job cancel, pause, shutdown),
when the ``timeout`` argument expires, and, with SIGKILL straight away, to the
leftovers of a group whose leader exited by itself.

:func:`kill_process_group` and :func:`process_group_alive` work on a bare pgid
recorded in the database, for crash recovery: an orphaned step's group is
killed before the step is retried.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from jobd.core.errors import ActionError

__all__ = [
    "TAIL_BYTES",
    "ProcessResult",
    "ProcessStartError",
    "kill_process_group",
    "process_group_alive",
    "run_process",
]

#: How much of stdout and of stderr a :class:`ProcessResult` keeps (the end).
TAIL_BYTES = 64 * 1024
# A line longer than this is logged in pieces, so one runaway line without a
# newline cannot grow memory or a log record without bound.
_MAX_LINE_BYTES = 16 * 1024
# After the group is dead its pipes close; a process that escaped the group
# (its own setsid) may keep them open, so draining output is bounded.
_DRAIN_SECONDS = 2.0
# Polling interval while waiting for a group to disappear.
_POLL_SECONDS = 0.02
# After SIGKILL a group vanishes almost at once; this only bounds a process
# stuck in uninterruptible I/O so that recovery cannot hang on it.
_AFTER_KILL_SECONDS = 5.0

PgidCallback = Callable[[int | None], Awaitable[None]]

# Groups started by run_process in this daemon and not yet reaped. A pgid
# recorded before a crash may since have been reused by one of these (pids
# wrap); kill_process_group must not mistake a live step for an orphan.
_OWN_GROUPS: set[int] = set()
# Told ("add", pgid) when a group starts and ("del", pgid) when it is reaped: the watchdog of
# a node of a cluster (jobd.engine.fencing), which kills them when the node's lease runs out.
_group_observer: Callable[[str, int], None] | None = None


def set_group_observer(observer: Callable[[str, int], None] | None) -> None:
    """Report every process group :func:`run_process` starts and reaps to ``observer``."""
    global _group_observer
    _group_observer = observer


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a process ended.

    ``exit_code`` is the leader's return code (negative: killed by that
    signal). ``stdout``/``stderr`` are the last :data:`TAIL_BYTES` bytes of
    each stream, decoded as UTF-8 with replacement characters. ``timed_out``
    is true when :func:`run_process`'s own ``timeout`` stopped the process.
    """

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    pid: int
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class ProcessStartError(ActionError):
    """The program could not be started at all (missing, not executable, bad format)."""

    def __init__(self, argv: Sequence[str], exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        super().__init__(
            f"cannot start {argv[0]}: {reason}",
            {"argv": list(argv), "errno": exc.errno, "reason": reason},
        )


# --------------------------------------------------------------------------- output


class _Tail:
    """The last ``limit`` bytes written to it."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._truncated = False

    def add(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self._limit
        if excess > 0:
            del self._buf[:excess]
            self._truncated = True

    def text(self) -> str:
        data = bytes(self._buf)
        if self._truncated:
            # The cut may have split a UTF-8 sequence: drop its orphaned
            # continuation bytes (0b10xxxxxx) rather than show U+FFFD.
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", errors="replace")


class _Capture:
    """One output stream: its tail, its partial last line and where lines go.

    It lives across the normal read loop and the shielded drain at cleanup, so
    a line split between the two is still logged whole.
    """

    def __init__(self, name: str, emit: Callable[[str, str], None]) -> None:
        self.name = name
        self.tail = _Tail()
        self._partial = bytearray()
        self._emit = emit

    def feed(self, chunk: bytes) -> None:
        self.tail.add(chunk)
        self._partial += chunk
        while True:
            newline = self._partial.find(b"\n")
            if newline < 0:
                break
            self._line(self._partial[:newline])
            del self._partial[: newline + 1]
        while len(self._partial) > _MAX_LINE_BYTES:
            self._line(self._partial[:_MAX_LINE_BYTES])
            del self._partial[:_MAX_LINE_BYTES]

    def finish(self) -> None:
        """Log a last line that had no newline."""
        if self._partial:
            self._line(self._partial)
            self._partial.clear()

    def _line(self, raw: bytes | bytearray) -> None:
        self._emit(self.name, bytes(raw).decode("utf-8", errors="replace").rstrip("\r"))


async def _pump(stream: ByteReceiveStream, capture: _Capture) -> None:
    """Read ``stream`` to its end into ``capture`` (safe to call again after a cancel)."""
    try:
        async for chunk in stream:
            capture.feed(chunk)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    capture.finish()


async def _feed_stdin(stream: ByteSendStream, data: bytes) -> None:
    """Write ``data`` and close; a process that exits without reading is not an error."""
    try:
        if data:
            await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


# --------------------------------------------------------------------------- groups


def _check_pgid(pgid: int) -> None:
    # killpg(0) would signal jobd's own group and killpg(1) init's: a corrupt
    # recorded pgid must never take the daemon (or the machine) down with it.
    if pgid <= 1 or pgid == os.getpgrp():
        raise ValueError(f"refusing to signal process group {pgid}")


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the group; False when it no longer exists (or is not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _has_live_member(pgid: int) -> bool:
    """Whether /proc shows a non-zombie process in group ``pgid`` (True if unknown)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def process_group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a member that is not a zombie.

    A zombie is already dead (it only waits for its parent to reap it), so a
    group made only of zombies counts as gone. A group that exists but
    belongs to another user counts as alive. Raises ``ValueError`` for
    ``pgid <= 1`` or jobd's own group.
    """
    _check_pgid(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_live_member(pgid)


async def _wait_group_gone(pgid: int) -> None:
    # Polling, because nothing notifies us when a group we are not the
    # parent of (or an orphaned grandchild) goes away.
    while process_group_alive(pgid):  # noqa: ASYNC110
        await anyio.sleep(_POLL_SECONDS)


async def kill_process_group(pgid: int, *, grace: float) -> None:
    """Stop every process of group ``pgid``: SIGTERM, up to ``grace`` s, then SIGKILL.

    Returns once the group is gone (or, for a process stuck in the kernel,
    after a few seconds more). A group that does not exist is not an error.
    Used at crash recovery on the pgid recorded for an interrupted step, so
    that an orphan never runs beside its own retry. A group that this daemon
    started through :func:`run_process` and still runs is not an orphan (its
    pgid was reused since the crash): it is left alone. Raises ``ValueError``
    for ``pgid <= 1`` or jobd's own group.
    """
    _check_pgid(pgid)
    if pgid in _OWN_GROUPS or not _signal_group(pgid, signal.SIGTERM):
        return
    with anyio.move_on_after(grace):
        await _wait_group_gone(pgid)
    if _signal_group(pgid, signal.SIGKILL):
        with anyio.move_on_after(_AFTER_KILL_SECONDS):
            await _wait_group_gone(pgid)


# --------------------------------------------------------------------------- run


def _checked_argv(argv: Sequence[str]) -> tuple[str, ...]:
    # A bare string is a Sequence[str] too: "ls -l" would run "l", "s", ...
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
        raise ValueError(f"argv must be a list of strings, not {type(argv).__name__}")
    if not argv:
        raise ValueError("argv must not be empty")
    bad = [item for item in argv if not isinstance(item, str)]
    if bad:
        raise ValueError(f"argv items must be strings; got {bad[0]!r}")
    return tuple(argv)


def _merged_env(env: Mapping[str, Any] | None) -> dict[str, str] | None:
    if env is None:
        return None  # inherit jobd's environment unchanged
    # Values from TOML params may be numbers; the child only sees strings.
    return {**os.environ, **{str(key): str(value) for key, value in env.items()}}


async def _start(
    argv: tuple[str, ...], env: dict[str, str] | None, cwd: str | Path | None, stdin: bool
) -> Process:
    # Shielded: a cancel landing inside the spawn would leave a child that
    # nobody holds a handle to, hence nobody kills or reaps.
    with anyio.CancelScope(shield=True):
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessStartError(argv, exc) from exc
    return process


def _streams(process: Process) -> tuple[ByteReceiveStream, ByteReceiveStream]:
    assert process.stdout is not None and process.stderr is not None
    return process.stdout, process.stderr


async def _supervise(
    process: Process,
    args: tuple[str, ...],
    stdin: bytes | None,
    captures: tuple[_Capture, _Capture],
    kill_grace: float,
    log: Any,
    on_pgid: PgidCallback | None,
    timeout: float | None,  # noqa: ASYNC109 - reported as timed_out, not a cancel
) -> ProcessResult:
    """:func:`run_process` once started: record the group, wait for the leader within
    ``timeout``, then (always: exit, timeout, cancel, ``on_pgid`` raising) stop what is
    left of the group, reap the leader and forget the group."""
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    _OWN_GROUPS.add(pgid)
    if _group_observer is not None:
        _group_observer("add", pgid)
    try:
        if on_pgid is not None:
            await on_pgid(pgid)
        with anyio.move_on_after(timeout) as deadline:
            await _communicate(process, pgid, stdin, captures)
    finally:
        await _shutdown(process, pgid, kill_grace, captures)
        _OWN_GROUPS.discard(pgid)
        if _group_observer is not None:
            _group_observer("del", pgid)
        with anyio.CancelScope(shield=True):
            await _forget_pgid(on_pgid, log)
    assert process.returncode is not None
    return ProcessResult(
        argv=args,
        exit_code=process.returncode,
        stdout=captures[0].tail.text(),
        stderr=captures[1].tail.text(),
        pid=pgid,
        timed_out=deadline.cancelled_caught,
    )


async def _communicate(
    process: Process, pgid: int, stdin: bytes | None, captures: Sequence[_Capture]
) -> None:
    """Feed stdin and stream output until the leader exits and its pipes close."""
    async with anyio.create_task_group() as tg:
        if process.stdin is not None:
            tg.start_soon(_feed_stdin, process.stdin, stdin or b"")
        for stream, capture in zip(_streams(process), captures, strict=True):
            tg.start_soon(_pump, stream, capture)
        await process.wait()
        # Leftovers (a backgrounded grandchild) must not outlive the step;
        # they also hold our pipes open, so the pumps end only once they die.
        _signal_group(pgid, signal.SIGKILL)
        tg.cancel_scope.deadline = anyio.current_time() + _DRAIN_SECONDS


async def _stop_group(process: Process, pgid: int, kill_grace: float) -> None:
    """SIGTERM the group, allow ``kill_grace`` s, SIGKILL it; reap the leader."""
    if process.returncode is None:
        _signal_group(pgid, signal.SIGTERM)
        with anyio.move_on_after(kill_grace):
            await process.wait()
            await _wait_group_gone(pgid)
    _signal_group(pgid, signal.SIGKILL)
    await process.wait()


async def _shutdown(
    process: Process, pgid: int, kill_grace: float, captures: Sequence[_Capture]
) -> None:
    """Always runs, shielded: stop the group while still logging what it says, then reap."""
    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tg:
            for stream, capture in zip(_streams(process), captures, strict=True):
                tg.start_soon(_pump, stream, capture)
            await _stop_group(process, pgid, kill_grace)
            tg.cancel_scope.deadline = anyio.current_time() + _DRAIN_SECONDS
        await process.aclose()


async def _forget_pgid(on_pgid: PgidCallback | None, log: Any) -> None:
    if on_pgid is None:
        return
    try:
        await on_pgid(None)
    except Exception as exc:
        # The group is dead either way; a stale record only makes recovery
        # signal a group that no longer exists. Do not mask the real outcome.
        log.warning("could not clear recorded process group", error=repr(exc))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _failure(result: ProcessResult, timeout: float | None) -> ActionError:
    program = result.argv[0]
    if result.timed_out:
        message = f"{program} timed out after {timeout:g} s"
    else:
        message = f"{program} exited with {result.exit_code}"
        if result.exit_code < 0:
            message += f" ({_signal_name(-result.exit_code)})"
        last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "")
        if last:
            message += f": {last.strip()}"
    return ActionError(
        message,
        {
            "argv": list(result.argv),
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "stdout": result.stdout,
            "stderr": result.stderr,
        },
    )


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin: bytes | None = None,
    kill_grace: float,
    log: Any,
    on_pgid: PgidCallback | None = None,
    check: bool = True,
    timeout: float | None = None,  # noqa: ASYNC109 - reported as timed_out, not a cancel
    log_event: str = "process output",
    log_fields: Mapping[str, Any] | None = None,
) -> ProcessResult:
    """Run ``argv`` (no shell) as the leader of a new process group and wait for it.

    - ``argv``: a non-empty list of strings, else ``ValueError``.
    - ``env``: merged *over* ``os.environ`` (values converted with ``str``);
      ``None`` inherits jobd's environment as it is.
    - ``stdin``: written to the process, then closed; ``None`` gives it
      ``/dev/null``.
    - Each output line is logged as ``log.info(log_event, **log_fields,
      stream="stdout"|"stderr", line=...)``; ``log_fields`` must not use the
      keys ``event``, ``stream`` or ``line``.
    - ``on_pgid(pgid)`` is awaited right after the start (for a durable record
      before anything else happens; if it raises, the process is stopped and
      the error propagates) and ``on_pgid(None)`` once the group is gone.
    - Cancellation of the caller, or ``timeout`` seconds passing, stops the
      whole group: SIGTERM, ``kill_grace`` s, SIGKILL. A cancel propagates; a
      ``timeout`` gives ``timed_out=True``. When the leader exits by itself,
      what is left of its group is SIGKILLed. The leader is always reaped.
    - ``check``: a non-zero exit or a timeout raises
      :class:`jobd.core.errors.ActionError` (message ``"<prog> exited with <code>:
      <last stderr line>"``; details ``exit_code``, ``stdout``, ``stderr``).
      A program that cannot be started raises :class:`ProcessStartError`
      (an ``ActionError``) whatever ``check`` says.
    """
    args = _checked_argv(argv)
    fields = dict(log_fields or {})

    def emit(stream: str, line: str) -> None:
        log.info(log_event, **{**fields, "stream": stream, "line": line})

    process = await _start(args, _merged_env(env), cwd, stdin is not None)
    captures = (_Capture("stdout", emit), _Capture("stderr", emit))
    result = await _supervise(process, args, stdin, captures, kill_grace, log, on_pgid, timeout)
    if check and not result.ok:
        raise _failure(result, timeout)
    return result
