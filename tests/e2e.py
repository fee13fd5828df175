"""Helpers to run the real daemon (``python -m jobd run``) and the real CLI as subprocesses.

Not a test module (no ``test_`` names). How a test knows the daemon is up:
it listens on a ``NOTIFY_SOCKET`` of its own, exactly as systemd does, and
waits for ``READY=1`` — no sleeps. Everything (state, sockets, logs) lives in
one short directory under /tmp, because a Unix socket path must stay under
108 bytes and pytest's ``tmp_path`` can be longer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Generous: a loaded CI machine imports fastapi & co slowly, and three nodes starting at
#: once on two busy cores took over 30 s (load 15). Only an upper bound: a daemon that dies
#: instead is noticed at once (``NotifyListener.wait_for``'s ``alive``).
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0

#: A drop-in plugin with actions whose names cannot clash with the shipped ones.
E2E_PLUGIN = '''
from __future__ import annotations

import anyio

import jobd


async def echo(ctx, **params):
    ctx.log.info("echoing", params=params)
    return {"echo": params}


async def wait_file(ctx, path, **_):
    """Finish once ``path`` exists: lets a test hold a job running without sleeping."""
    while not await anyio.Path(path).exists():
        await anyio.sleep(0.05)
    return {"seen": path}


async def talk(ctx, path, **_):
    """Log a line, wait for ``path``, log another, wait for ``path``.end: log lines in the
    middle of one step, with no event between them."""
    ctx.log.info("before the gate")
    await wait_file(ctx, path)
    ctx.log.info("past the gate")
    await wait_file(ctx, path + ".end")
    return {}


@jobd.hookimpl
def jobd_actions():
    return [jobd.Action("e2e_echo", echo, "echo params back"),
            jobd.Action("e2e_wait_file", wait_file, "wait until a file exists"),
            jobd.Action("e2e_talk", talk, "log, wait for a file, log, wait for FILE.end")]
'''

DEMO_WORKFLOWS = """
[workflows.demo]
steps = [
  { name = "hello", action = "e2e_echo", params = { greeting = "hello {who}" } },
  { name = "again", action = "e2e_echo", params = { n = 2 } },
]

[workflows.hold]
steps = [ { name = "wait", action = "e2e_wait_file", params = { path = "{path}" } } ]
"""


def short_dir() -> Path:
    """A fresh directory with a path short enough for Unix sockets inside it."""
    return Path(tempfile.mkdtemp(prefix="jobd-"))


def jobd_env(**extra: str) -> dict[str, str]:
    """The environment for jobd subprocesses: this checkout importable, no inherited jobd/systemd
    variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBD_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Layout:
    """Where one daemon's files live."""

    base: Path
    config: Path = field(init=False)
    state: Path = field(init=False)
    socket: Path = field(init=False)
    plugins: Path = field(init=False)
    notify: Path = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.base / "etc" / "jobd.toml"
        self.state = self.base / "state"
        self.socket = self.base / "run" / "jobd.sock"
        self.plugins = self.base / "plugins"
        self.notify = self.base / "notify.sock"
        self.log = self.base / "daemon.log"


def config_text(
    layout: Layout,
    *,
    workflows: str = DEMO_WORKFLOWS,
    api_extra: str = "",
    daemon_extra: str = "",
    shutdown_grace: float = 10,
    workers: int = 4,
) -> str:
    """A complete config for ``layout``; JSON logs at info so tests can read them."""
    return (
        textwrap.dedent(f"""\
        [daemon]
        state_dir = "{layout.state}"
        plugin_dirs = ["{layout.plugins}"]
        shutdown_grace = {shutdown_grace}
        kill_grace = 2
        workers = {workers}
        {daemon_extra}

        [api]
        socket = "{layout.socket}"
        socket_mode = "0600"
        {api_extra}

        [logging]
        format = "json"
        level = "info"
        """)
        + workflows
    )


def write_layout(base: Path, **config_kwargs: Any) -> Layout:
    """Create the config file and the plugin dir of a daemon rooted at ``base``."""
    layout = Layout(base)
    layout.config.parent.mkdir(parents=True, exist_ok=True)
    layout.plugins.mkdir(parents=True, exist_ok=True)
    (layout.plugins / "e2e_actions.py").write_text(E2E_PLUGIN)
    layout.config.write_text(config_text(layout, **config_kwargs))
    return layout


class NotifyListener:
    """Plays systemd's part: receives sd_notify datagrams on a socket of ours."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)  # left by an earlier daemon of the same test
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(str(path))
        except OSError:
            self.sock.close()
            raise
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self,
        key: str,
        value: str = "1",
        timeout: float = START_TIMEOUT,
        alive: Callable[[], bool] = lambda: True,
    ) -> dict[str, str]:
        """The next message with ``key=value``; AssertionError on timeout or if ``alive()``
        turns false (the daemon died instead of answering)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value} from jobd within {timeout} s")
            # Short slices so a dead daemon is noticed quickly; this is not a sleep.
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                if not alive():
                    raise AssertionError(f"jobd exited while waiting for {key}={value}") from None
                continue
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append(message)
            if message.get(key) == value:
                return message

    def drain(self) -> list[dict[str, str]]:
        """Read every message already waiting, without blocking, and return them.

        A reload through the API (``jobd reload``, ``POST /v1/reload``) also sends
        RELOADING=1 and READY=1; nobody waits for them, so they stay queued here and
        would answer the next :meth:`Daemon.reload`'s waits before its own reload ends."""
        drained: list[dict[str, str]] = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(65536).decode()
                except BlockingIOError:
                    return drained
                message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
                self.messages.append(message)
                drained.append(message)
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


@dataclass
class Daemon:
    """A running ``python -m jobd run`` and the means to talk to it."""

    layout: Layout
    proc: subprocess.Popen[bytes]
    notify: NotifyListener
    env: dict[str, str]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.layout.log.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (anything else on its output is skipped)."""
        events = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this daemon (through ``JOBD_SOCKET``)."""
        return run_cli(*args, env=jobd_env(JOBD_SOCKET=str(self.layout.socket)), timeout=timeout)

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"jobd {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def reload(self, timeout: float = START_TIMEOUT) -> None:
        """SIGHUP, then wait for RELOADING=1 and the READY=1 that ends the reload."""
        self.notify.drain()  # an earlier API reload's pair must not answer for this one
        self.send(signal.SIGHUP)
        self.notify.wait_for("RELOADING", timeout=timeout, alive=lambda: self.alive)
        self.notify.wait_for("READY", timeout=timeout, alive=lambda: self.alive)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait for the exit; returns the exit status."""
        if self.alive:
            self.send(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"jobd did not exit within {timeout} s of SIGTERM") from None


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m jobd ARGS`` with output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "jobd", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else jobd_env(),
        timeout=timeout,
        cwd=ROOT,
    )


def run_daemon_to_exit(
    config: Path, timeout: float = START_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``jobd run`` expected to refuse to start: returns once it has exited."""
    return run_cli("run", "--config", str(config), timeout=timeout)


def start_daemon(layout: Layout, *, extra_env: dict[str, str] | None = None) -> Daemon:
    """Start ``python -m jobd run --config ...`` and return once it sent READY=1."""
    notify = NotifyListener(layout.notify)
    env = jobd_env(NOTIFY_SOCKET=str(layout.notify), **(extra_env or {}))
    with layout.log.open("ab") as out:  # a file, not a pipe: a full pipe would block jobd
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobd", "run", "--config", str(layout.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    daemon = Daemon(layout, proc, notify, env)
    try:
        notify.wait_for("READY", alive=lambda: daemon.alive)
    except AssertionError as exc:
        if daemon.alive:
            proc.kill()
        proc.wait()
        notify.close()
        raise AssertionError(f"{exc}\n--- jobd output ---\n{daemon.log_text()}") from None
    return daemon


@contextmanager
def running_daemon(base: Path | None = None, **config_kwargs: Any) -> Iterator[Daemon]:
    """A daemon in its own short directory; stopped (and checked to exit 0) afterwards."""
    own = base is None
    base = short_dir() if base is None else base
    daemon = start_daemon(write_layout(base, **config_kwargs))
    try:
        yield daemon
        if daemon.alive:
            status = daemon.stop()
            assert status == 0, f"jobd exited {status}\n{daemon.log_text()}"
    finally:
        if daemon.alive:
            daemon.proc.kill()
            daemon.proc.wait()
        daemon.notify.close()
        if own:
            shutil.rmtree(base, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true, with a deadline (for state seen only from outside).
    The default is generous: on two busy cores a daemon's step or a CLI call can take
    seconds; a condition met at once returns at once."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)
