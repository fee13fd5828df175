"""The sd_notify protocol, spoken directly (no libsystemd), and the watchdog loop.

systemd hands a ``Type=notify`` service ``$NOTIFY_SOCKET``: an AF_UNIX
datagram socket (a path, or an abstract name written with a leading ``@``).
Each datagram is newline-separated ``KEY=VALUE`` lines (``READY=1``,
``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``, ``RELOADING=1`` ...).
Without ``$NOTIFY_SOCKET`` (a terminal, a test) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping

import anyio
import structlog

log = structlog.get_logger(__name__)

#: What systemd sets for us; children (scripts, steps) must not inherit them.
NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _address(notify_socket: str) -> str:
    """``@name`` is Linux's abstract namespace: the name with a leading NUL byte."""
    return "\0" + notify_socket[1:] if notify_socket.startswith("@") else notify_socket


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to one address; every method is a no-op without one.

    A send that fails is logged once and reported as ``False``; it never
    raises, because a lost status message must not take the daemon down.
    """

    def __init__(self, notify_socket: str | None) -> None:
        self.address = _address(notify_socket) if notify_socket else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(
        cls, env: MutableMapping[str, str] | None = None, *, unset: bool = False
    ) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET``; with ``unset`` the variable is removed from
        ``env`` so that processes jobd starts do not inherit it (``WATCHDOG_*`` stay
        until :func:`watchdog_interval` has read them; see :func:`forget_notify_env`)."""
        env = os.environ if env is None else env
        value = env.get("NOTIFY_SOCKET") or None
        if unset:
            env.pop("NOTIFY_SOCKET", None)
        return cls(value)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram, e.g. ``notify(READY=1, STATUS="up")``."""
        if self.address is None or not fields:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(payload.encode(), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "sd_notify failed", address=self.address.replace("\0", "@"), error=str(exc)
                )
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up finished (or a reload did): systemd considers the service active."""
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        """Free text shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive ping; systemd kills and restarts us when they stop (``WatchdogSec``)."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        """A graceful stop has begun."""
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def reloading(self, status: str | None = None) -> bool:
        """A reload has begun; ``MONOTONIC_USEC`` is required by ``Type=notify-reload``."""
        fields: dict[str, str | int] = {"RELOADING": 1, "MONOTONIC_USEC": _monotonic_usec()}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notify(**fields: str | int) -> bool:
    """One-shot :meth:`Notifier.notify` to ``$NOTIFY_SOCKET`` (no-op when unset)."""
    notifier = Notifier.from_env()
    try:
        return notifier.notify(**fields)
    finally:
        notifier.close()


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """How often to ping, in seconds: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled advises.

    ``None`` when the watchdog is off: no or a non-positive ``WATCHDOG_USEC``, or a
    ``WATCHDOG_PID`` naming another process (the variables were inherited).
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid.strip() != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


def forget_notify_env(env: MutableMapping[str, str] | None = None) -> None:
    """Remove the sd_notify variables so that scripts and steps do not inherit them."""
    env = os.environ if env is None else env
    for name in NOTIFY_ENV:
        env.pop(name, None)


async def watchdog_loop(notifier: Notifier, interval: float, healthy: Callable[[], bool]) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` s while ``healthy()`` is true; runs until cancelled.

    When ``healthy()`` is false (or raises) the ping is withheld, so systemd's
    watchdog fires and restarts a daemon that is up but no longer working.
    The loop itself running proves the event loop is not blocked.
    """
    was_healthy = True
    while True:
        try:
            ok = bool(healthy())
        except Exception:
            log.exception("health check raised; withholding the watchdog ping")
            ok = False
        if ok:
            notifier.watchdog()
        elif was_healthy:
            log.error("unhealthy: withholding the watchdog ping", interval=interval)
        was_healthy = ok
        await anyio.sleep(interval)
