"""Self-fencing outside the event loop: the watchdog process of a node of a cluster (SPEC §10).

A node that cannot renew its lease must stop its steps before the lease runs out, or
another node takes the job over while its step still runs. The daemon itself cannot
be trusted with that: a daemon stopped with SIGSTOP, swapped out or stuck runs no code.
So :func:`start` forks, before the event loop exists, a small process that the daemon
tells (through a pipe) every process group it starts or reaps (``jobd.plugin.processes``
reports them) and the time (:func:`clock`) at which it *sent* each lease renewal that
succeeded (the server's renewal time is later, so the watchdog's clock runs ahead of the
lease's). When the last renewal is older than ``lease - margin``, the watchdog SIGKILLs
every known step group and the daemon, and exits: the daemon is fenced, its service
manager starts it again and it rejoins with a new epoch. When the daemon exits (the pipe
closes), however it exits, the watchdog SIGKILLs the groups left and exits too: a node
that died leaves no step running for its successor to duplicate.

A group is reported once its process runs, so a daemon killed in between would leave it
unknown. Hence every process the daemon starts also carries, in its environment,
``JOBD_FENCE=<token>`` (a token of this daemon's run, inherited by whatever it starts
in turn): when it acts, the watchdog also kills every process whose environment
(``/proc/PID/environ``) holds the token, reported or not.

Only a node on PostgreSQL forks one; SQLite (one node) has none and keeps today's
behaviour (a crashed daemon's steps are killed by its own recovery).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import sys
import time
from pathlib import Path

from jobd.plugin import processes

#: Seconds before the lease runs out at which the watchdog acts: at least this, and at
#: least a sixth of the lease (renewals come every third of it).
MIN_MARGIN = 0.5
#: The environment variable that marks the processes of one daemon's run.
MARK = "JOBD_FENCE"
#: The longest the watchdog sleeps before it looks at :func:`clock` again: a host that was
#: suspended wakes with the lease long gone, and the watchdog acts within this.
TICK = 0.25
#: The most looks through /proc for marked processes at one kill (each finds those forked
#: during the one before; a SIGKILLed process forks no more).
SCANS = 5


def clock() -> float:
    """The clock of the renewals and the watchdog: ``CLOCK_BOOTTIME`` where there is one
    (Linux), which, unlike the monotonic clock, goes on while the host is suspended, as the
    lease does on the database server; the monotonic clock elsewhere."""
    return time.clock_gettime(_CLOCK)


_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def margin(lease: float) -> float:
    """How long before a lease runs out the watchdog kills the steps."""
    return max(MIN_MARGIN, lease / 6)


class Watchdog:
    """The daemon's end of the pipe to its watchdog process."""

    def __init__(self, fd: int, pid: int) -> None:
        self._fd = fd
        self.pid = pid
        self.broken = False

    def _tell(self, line: str) -> None:
        if self.broken:
            return
        try:
            os.write(self._fd, line.encode())
        except OSError:  # the watchdog is gone: the lease renewals see it and fence
            self.broken = True

    def renewed(self, sent: float) -> None:
        """A renewal sent at ``clock() == sent`` succeeded."""
        self._tell(f"renew {sent!r}\n")

    def group(self, event: str, pgid: int) -> None:
        """``event``: ``add`` (a step's group started) or ``del`` (reaped)."""
        self._tell(f"{event} {pgid}\n")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_current: Watchdog | None = None


def current() -> Watchdog | None:
    """The running daemon's watchdog (None: no cluster, or not started)."""
    return _current


def start(lease: float) -> Watchdog:
    """Fork the watchdog for a lease of ``lease`` seconds; call before any thread or event
    loop exists. From now on every process group ``jobd.plugin.processes`` starts is reported."""
    global _current
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    os.environ[MARK] = token  # inherited by every process the daemon starts from now on
    read, write = os.pipe()
    daemon = os.getpid()
    pid = os.fork()
    if pid == 0:  # the watchdog: nothing of the daemon's but the pipe
        try:
            os.close(write)
            _child(read, daemon, lease, token)
        finally:
            os._exit(0)
    os.close(read)
    os.set_inheritable(write, False)
    _current = Watchdog(write, pid)
    processes.set_group_observer(_current.group)
    return _current


def _child(fd: int, daemon: int, lease: float, token: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a stop of the daemon's group is the daemon's
    os.closerange(3, fd)
    os.closerange(fd + 1, 65536)
    _watch(fd, daemon, lease - margin(lease), f"{MARK}={token}".encode())


def _watch(fd: int, daemon: int, allowed: float, mark: bytes) -> None:
    """Until the pipe closes or the lease is about to run out (see the module docstring)."""
    groups: set[int] = set()
    last: float | None = None  # armed by the first renewal (the join)
    pending = b""
    while True:
        left = None if last is None else last + allowed - clock()
        ready, _, _ = select.select([fd], [], [], None if left is None else min(TICK, max(0, left)))
        if not ready:
            if left is not None and left > TICK:
                continue  # a tick: look at the clock again (see TICK)
            _signal(daemon, signal.SIGKILL)
            _kill(groups, mark, f"no lease renewal for {allowed:.1f} s", fenced=True)
            return
        data = os.read(fd, 65536)
        if not data:  # the daemon is gone
            _kill(groups, mark, "the daemon exited")
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            kind, _, value = line.decode().partition(" ")
            if kind == "renew":
                last = float(value)
            elif kind == "add":
                groups.add(int(value))
            elif kind == "del":
                groups.discard(int(value))


def _kill(groups: set[int], mark: bytes, why: str, *, fenced: bool = False) -> None:
    """SIGKILL the reported groups, then every process marked with this run's token (and
    its group), looking again until a look finds none it has not killed (a process forked
    while the last look ran, bounded: SCANS); a line on stderr when there was any, and
    always when it ``fenced`` the daemon (it killed it: the daemon says nothing more)."""
    for pgid in sorted(groups):
        if pgid > 1 and pgid != os.getpgrp():
            _signal(-pgid, signal.SIGKILL)
    marked: set[int] = set()
    for _ in range(SCANS):
        found = set(_marked(mark)) - marked
        if not found:
            break
        marked |= found
        for pid in found:
            _kill_marked(pid)
    if groups or marked or fenced:
        print(
            f"jobd watchdog: {why}: killed {len(groups)} step process group(s) and "
            f"{len(marked)} process(es) of this daemon",
            file=sys.stderr,
            flush=True,
        )
    groups.clear()


def _kill_marked(pid: int) -> None:
    with contextlib.suppress(OSError):  # gone already
        pgid = os.getpgid(pid)
        # A step's own group (its session); never the daemon's group, which is the
        # watchdog's too (and its service manager's or shell's).
        if pgid != os.getpgrp():
            _signal(-pgid, signal.SIGKILL)
    _signal(pid, signal.SIGKILL)


def _marked(mark: bytes) -> list[int]:
    """The processes whose environment holds ``mark`` (those of other users are unreadable:
    never ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        if pid < 0:
            os.killpg(-pid, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        pass  # gone already
