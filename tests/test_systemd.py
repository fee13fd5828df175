"""The unit file passes systemd-analyze; sd_notify messages arrive on a real datagram socket."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from jobd.service import systemd

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "jobd.service"
SYSUSERS = ROOT / "systemd" / "jobd.sysusers"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        match = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if match:
            settings.setdefault(match[1], []).append(match[2])
    return settings


@needs_analyze
def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at one that does.
    unit = tmp_path / "jobd.service"
    text = UNIT.read_text().replace("ExecStart=/usr/bin/jobd", "ExecStart=/bin/true")
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even for unknown keys: its complaints about our file are the verdict.
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if str(unit) in line]
    assert done.returncode == 0, done.stderr
    assert complaints == []


def test_unit_has_the_service_contract() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["KillMode"] == ["mixed"] and s["Restart"] == ["on-failure"]
    # A node that lost its database is restarted for as long as it takes (no start limit).
    assert s["StartLimitIntervalSec"] == ["0"]
    assert int(s["TimeoutStopSec"][0]) > 30 + 10  # shutdown_grace + kill_grace defaults
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory", "User", "Group"):
        assert s[key] == ["jobd"], key
    assert int(s["WatchdogSec"][0]) > 0
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectControlGroups"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert "MemoryDenyWriteExecute" not in s and "PrivateNetwork" not in s


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_file_creates_the_user(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", "--dry-run", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Creating user 'jobd'" in done.stdout + done.stderr


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_notifier_sends_the_protocol_messages(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = systemd.Notifier(path)
    assert notifier.ready("serving on /run/jobd/jobd.sock")
    assert receive(sock) == {"READY": "1", "STATUS": "serving on /run/jobd/jobd.sock"}
    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}
    assert notifier.reloading()
    got = receive(sock)
    assert got["RELOADING"] == "1" and int(got["MONOTONIC_USEC"]) > 0
    assert notifier.status("3 running")
    assert receive(sock) == {"STATUS": "3 running"}
    assert notifier.stopping()
    assert receive(sock) == {"STOPPING": "1"}
    notifier.close()


def test_abstract_namespace_address() -> None:
    name = f"jobd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = systemd.Notifier("@" + name)
        assert notifier.ready()
        assert receive(sock) == {"READY": "1"}
        notifier.close()


def test_module_notify_reads_the_environment(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert systemd.notify(STOPPING=1)
    assert receive(sock) == {"STOPPING": "1"}


def test_without_notify_socket_everything_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = systemd.Notifier.from_env()
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.stopping()
    assert not systemd.notify(READY=1)


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = systemd.Notifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False
    assert notifier.watchdog() is False  # logged once, never raises
    notifier.close()


def test_from_env_can_unset_for_children() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1"}
    notifier = systemd.Notifier.from_env(env, unset=True)
    assert notifier.address == "/run/systemd/notify" and "NOTIFY_SOCKET" not in env
    systemd.forget_notify_env(env)
    assert env == {}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env) == expected


class Health:
    """A health check that the test flips, counting calls and signalling the Nth."""

    def __init__(self) -> None:
        self.ok = True
        self.checks = 0
        self.target = 0
        self.reached = anyio.Event()

    def __call__(self) -> bool:
        self.checks += 1
        if self.checks >= self.target:
            self.reached.set()
        return self.ok

    async def wait_for_more_checks(self, n: int) -> None:
        self.target, self.reached = self.checks + n, anyio.Event()
        await self.reached.wait()


async def test_watchdog_loop_pings_only_while_healthy(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    sock.setblocking(False)
    notifier = systemd.Notifier(path)
    health = Health()

    async def next_ping() -> dict[str, str]:
        await anyio.wait_readable(sock)
        return receive(sock)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(systemd.watchdog_loop, notifier, 0.01, health)
            assert await next_ping() == {"WATCHDOG": "1"}
            health.ok = False
            # Single event loop: after the flip no check can pass, so drain what was sent
            # before it and let several unhealthy checks go by.
            while True:
                try:
                    sock.recv(4096)
                except BlockingIOError:
                    break
            await health.wait_for_more_checks(3)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)  # no ping while unhealthy
            health.ok = True
            assert await next_ping() == {"WATCHDOG": "1"}
            tg.cancel_scope.cancel()
    notifier.close()
