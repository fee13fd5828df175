"""The one wake-up for the earliest due job, and the guard every timer callback runs in.

:class:`jobd.plan.timers.Timers` runs :meth:`DueTimer.loop` in its task group and
hands :meth:`DueTimer.wake_due_at` to the engine.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog

from jobd.plan.alarm import WallClockAlarm

log = structlog.get_logger("jobd.plan.timers")

DueCallback = Callable[[], Awaitable[None]]


class DueTimer:
    """Calls one callback at one time (the earliest due job's), each setting replacing
    the last. Use it from the event loop thread only (it is not thread-safe)."""

    def __init__(self, clock: Callable[[], float], max_sleep: float) -> None:
        """``clock``: the wall clock (POSIX seconds). ``max_sleep``: the longest the
        loop sleeps before re-reading ``clock``, so a stepped wall clock (NTP,
        suspend) delays a due job by at most that much."""
        self._clock = clock
        self._max_sleep = max_sleep
        self._due_at: float | None = None
        self._due_callback: DueCallback | None = None
        self._due_changed: anyio.Event | None = None

    def wake_due_at(self, at: float | None, callback: DueCallback) -> None:
        """Call ``callback()`` once at ``at`` (now, if it has passed); ``None`` cancels.

        One timer for the earliest due job: each call replaces the previous one.
        The engine keeps due times in the store and calls this with the earliest;
        it typically calls it again from ``callback``. May be called before
        :meth:`loop` starts.

        Why a plain anyio task and not an APScheduler DateTrigger job: it is
        replaced on nearly every submission and completion, and replacing a job
        costs a job-store update and a deferred wake-up; a DateTrigger in the past
        is dropped as a misfire unless the grace is disabled; and the callback runs
        in jobd's task group rather than in a loose asyncio task.
        """
        self._due_at = at
        self._due_callback = None if at is None else callback
        if self._due_changed is not None:
            self._due_changed.set()

    @property
    def due_at(self) -> float | None:
        """The time the due wake-up is set for, if any."""
        return self._due_at

    async def loop(self) -> None:
        """Call the callbacks at their times, until cancelled."""
        # On the real wall clock, a timerfd wakes the loop at the due time to the
        # microsecond (the loop's own timers count in milliseconds; see jobd.plan.alarm).
        alarm = WallClockAlarm.create(self._ring) if self._clock is time.time else None
        try:
            while True:
                self._due_changed = changed = anyio.Event()
                at, callback = self._due_at, self._due_callback
                if at is None or callback is None:
                    await changed.wait()
                    continue
                delay = at - self._clock()
                if delay > 0 and alarm is not None:
                    alarm.arm(at)  # rings `changed`, as a new due time would
                    await changed.wait()
                    continue
                if delay > 0:
                    # Wake early on a change, and every max_sleep to re-read the wall clock.
                    with anyio.move_on_after(min(delay, self._max_sleep)):
                        await changed.wait()
                    continue
                self._due_at = self._due_callback = None
                await guarded(callback, timer="due", due_at=at)
        finally:
            # The event belongs to this loop's event loop; a later loop makes its own.
            self._due_changed = None
            if alarm is not None:
                alarm.close()

    def _ring(self) -> None:
        if self._due_changed is not None:
            self._due_changed.set()


async def guarded(callback: Callable[[], Awaitable[None]], **context: Any) -> None:
    """Await ``callback()``; log an ``Exception`` instead of letting it end the service."""
    try:
        await callback()
    except Exception:
        log.exception("timer callback failed", **context)
