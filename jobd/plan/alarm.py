"""A wall-clock alarm for the event loop, exact to microseconds: a Linux ``timerfd``.

The event loop's own timers count in whole milliseconds (uvloop's clock is libuv's
millisecond ``uv_now``; asyncio rounds its ``epoll`` timeout up to the next
millisecond), which made a job due at 12:00:00.000 start anywhere up to a
millisecond late, half a millisecond on average. A ``timerfd`` armed at an absolute
``CLOCK_REALTIME`` time becomes readable at that time, to the microsecond, and
follows a stepped wall clock by itself (NTP, a manual ``date -s``).

There is no ``timerfd`` in Python's standard library before 3.13, so this module
calls libc through ``ctypes``. Where that is not possible (not Linux), :meth:`create`
returns ``None`` and callers use the loop's timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import os
import sys
from collections.abc import Callable

_CLOCK_REALTIME = 0
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class WallClockAlarm:
    """Calls ``callback()`` on the event loop when the wall clock reaches the armed time.

    One alarm at a time: :meth:`arm` replaces the previous time. Use from the loop's
    thread; :meth:`close` when done."""

    def __init__(
        self,
        fd: int,
        settime: Callable[..., int],
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[], None],
    ) -> None:
        self._fd, self._settime, self._loop, self._callback = fd, settime, loop, callback
        loop.add_reader(fd, self._on_ready)

    @classmethod
    def create(cls, callback: Callable[[], None]) -> WallClockAlarm | None:
        """An alarm on the running loop, or None where there is no ``timerfd``."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            create, settime = libc.timerfd_create, libc.timerfd_settime
        except (OSError, AttributeError):
            return None
        settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        fd = create(_CLOCK_REALTIME, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        return cls(fd, settime, asyncio.get_running_loop(), callback)

    def arm(self, at: float) -> None:
        """Fire at ``at`` (POSIX seconds; at once if it has passed)."""
        frac, whole = math.modf(max(at, 1e-9))
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(int(whole), int(frac * 1e9)))
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def disarm(self) -> None:
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(0, 0))
        self._settime(self._fd, 0, ctypes.byref(spec), None)

    def _on_ready(self) -> None:
        try:
            os.read(self._fd, 8)  # the number of expirations; reading re-arms readiness
        except BlockingIOError:  # disarmed or re-armed after it became readable
            return
        self._callback()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
