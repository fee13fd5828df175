"""The clock: schedule arithmetic, missed-firing plans and the timer service (SPEC §3.1).

This is the only module that imports APScheduler (3.11, the stable line). Times
are POSIX seconds (``float``, UTC), as everywhere in jobd.

Two halves:

* Pure arithmetic over APScheduler triggers: :func:`make_trigger`,
  :func:`next_fire`, :func:`fires_between`, :func:`plan_misfires` (the counting
  and planning, which needs no APScheduler, is :mod:`jobd.plan.firings`'s; the
  crontab day-of-week translation :mod:`jobd.plan.crontab`'s). Nothing here
  reads the clock, so tests pass times in.
* :class:`Timers`, the service the engine starts in its task group: the
  recurring ``[[schedules]]`` run on an APScheduler ``AsyncIOScheduler``; the
  single "earliest due job" wake-up is a plain anyio task
  (:class:`jobd.plan.duetimer.DueTimer`, which says why), rung by a wall-clock
  ``timerfd`` (:mod:`jobd.plan.alarm`) on Linux.

Cron semantics (5 fields, in the schedule's ``timezone``) follow Vixie cron /
cronie, not APScheduler 3's ``CronTrigger.from_crontab``, which differs from
crontab(5) in three ways that would surprise an operator:

* Day of week: crontab counts ``0`` (and ``7``) as Sunday; APScheduler 3 counts
  ``0`` as Monday (its issue #286). The field is translated, so ``1-5`` is
  Monday to Friday and ``0`` is Sunday.
* Day of month *and* day of week both restricted (neither starts with ``*``):
  crontab fires when *either* matches (``0 0 13 * 5``: every 13th and every
  Friday); APScheduler would need both. Two triggers are combined.
* Autumn DST repeat: APScheduler fires a fixed-time job twice when its local
  time occurs twice (``0 2 * * *`` on 2026-10-25 in Europe/Brussels, at 00:00Z
  and 01:00Z). Like cronie, a schedule whose minute and hour fields are both
  fixed fires only at the first occurrence; one with ``*`` in minute or hour
  (``*/30 * * * *``) keeps its real-time cadence through the repeated hour.

Spring DST gap: a local time that does not exist (02:00-02:59 on 2026-03-29 in
Europe/Brussels) is read with the offset before the change, as APScheduler
does, so ``0 2 * * *`` fires at 01:00Z = 03:00 local, and ``30 2 * * *`` at
03:30 local: once that day, one hour late by the wall clock.

Interval schedules are anchored at the epoch (1970-01-01T00:00:00Z): they fire
at every multiple of ``interval`` seconds since then. Firings are thus the same
before and after a restart or a reload, need no stored anchor, and
``interval = 86400`` fires at midnight UTC (use cron for another time of day).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import anyio.lowlevel
import structlog
from anyio.abc import TaskStatus
from apscheduler.executors.base import BaseExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from jobd.config import ScheduleConfig
from jobd.plan.crontab import apscheduler_dow
from jobd.plan.duetimer import DueCallback, DueTimer, guarded
from jobd.plan.firings import MisfirePlan, firings, latest, misfire_plan

__all__ = [
    "EPOCH",
    "SCHEDULE_JOB_PREFIX",
    "DueCallback",
    "FireCallback",
    "MisfirePlan",
    "ScheduleTrigger",
    "Timers",
    "fires_between",
    "make_trigger",
    "next_fire",
    "plan_misfires",
]

log = structlog.get_logger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The APScheduler job id prefix of the recurring schedules.
SCHEDULE_JOB_PREFIX = "schedule:"

FireCallback = Callable[[ScheduleConfig, float], Awaitable[None]]

# -- cron translation ----------------------------------------------------------


def _cron_triggers(expr: str, tz: tzinfo) -> list[Any]:
    """APScheduler triggers whose union is the crontab expression ``expr`` in ``tz``."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, dom, month, dow = fields
    common = {"minute": minute, "hour": hour, "month": month, "second": 0, "timezone": tz}
    aps_dow = apscheduler_dow(dow)
    if dom.startswith("*") or dow.startswith("*"):
        return [CronTrigger(day=dom, day_of_week=aps_dow, **common)]
    # Both restricted: crontab fires when either matches.
    return [
        CronTrigger(day=dom, day_of_week="*", **common),
        CronTrigger(day="*", day_of_week=aps_dow, **common),
    ]


# -- the trigger -----------------------------------------------------------------


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """An APScheduler trigger for one schedule, with jobd's cron rules (module docstring).

    Used both by the pure functions below and by the live scheduler, so what
    :func:`next_fire` predicts is what :class:`Timers` fires.
    """

    __slots__ = ("fixed_time", "interval", "raw", "schedule", "tz")

    def __init__(self, schedule: ScheduleConfig) -> None:
        self.schedule = schedule
        self.tz = _zone(schedule)
        self.interval: float | None = None
        if (schedule.cron is None) == (schedule.interval is None):
            raise ValueError(f"schedule {schedule.name}: set exactly one of cron and interval")
        if schedule.interval is not None:
            if not (math.isfinite(schedule.interval) and schedule.interval > 0):
                raise ValueError(f"schedule {schedule.name}: interval must be > 0 seconds")
            raw = IntervalTrigger(seconds=schedule.interval, start_date=EPOCH, timezone=UTC)
            self.raw = [raw]
            # APScheduler's length (whole microseconds) is the grid the firings follow.
            self.interval = float(raw.interval_length)
            self.fixed_time = False
        else:
            cron = schedule.cron or ""
            try:
                self.raw = _cron_triggers(cron, self.tz)
            except ValueError as exc:
                raise ValueError(f"schedule {schedule.name}: cron {cron!r}: {exc}") from exc
            minute, hour = cron.split()[:2]
            self.fixed_time = not (minute.startswith("*") or hour.startswith("*"))

    def next_after(self, t: float) -> float | None:
        """The first firing strictly after ``t``, or ``None`` if there is none."""
        n = self._raw_next_after(t)
        # The repeated autumn hour: a fixed-time schedule fired at the first pass.
        while n is not None and self.fixed_time and self._second_pass(n):
            n = self._raw_next_after(n)
        return n

    def _raw_next_after(self, t: float) -> float | None:
        found = [
            n for n in (_trigger_next_after(raw, t, self.tz) for raw in self.raw) if n is not None
        ]
        return min(found, default=None)

    def _second_pass(self, t: float) -> bool:
        """Whether the local time of ``t`` is the second occurrence of a repeated wall time."""
        return datetime.fromtimestamp(t, self.tz).fold == 1

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """APScheduler's contract: strictly after the previous firing, or at/after ``now``."""
        if previous_fire_time is not None:
            n = self.next_after(previous_fire_time.timestamp())
        else:
            n = self.next_after(math.nextafter(now.timestamp(), -math.inf))
        return None if n is None else datetime.fromtimestamp(n, UTC)

    def __str__(self) -> str:
        s = self.schedule
        return f"cron[{s.cron} {s.timezone}]" if s.cron else f"interval[{s.interval}s]"


def _zone(schedule: ScheduleConfig) -> ZoneInfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"schedule {schedule.name}: unknown timezone {schedule.timezone!r}"
        ) from exc


def _trigger_next_after(raw: Any, t: float, tz: tzinfo) -> float | None:
    """First firing of an APScheduler trigger strictly after ``t``."""
    now = datetime.fromtimestamp(t, tz)
    n = raw.get_next_fire_time(None, now)  # at or after now
    while n is not None and n.timestamp() <= t:
        n = raw.get_next_fire_time(n, n)  # strictly after n
    return None if n is None else float(n.timestamp())


# -- pure schedule arithmetic -------------------------------------------------------


def make_trigger(schedule: ScheduleConfig) -> ScheduleTrigger:
    """The APScheduler trigger for ``schedule`` (cron rules and interval anchor: module docstring).

    Raises ``ValueError`` naming the schedule for a bad cron expression, a
    non-positive interval, both or neither of cron and interval, or an unknown
    timezone (the config loader turns it into a ``ConfigError``).
    """
    return ScheduleTrigger(schedule)


def next_fire(schedule: ScheduleConfig, after: float) -> float | None:
    """The first firing of ``schedule`` strictly after ``after`` (``None``: never again)."""
    return make_trigger(schedule).next_after(after)


def fires_between(
    schedule: ScheduleConfig, after: float, until: float, limit: int = 10_000
) -> list[float]:
    """The firings in ``(after, until]``, oldest first, at most ``limit`` (the oldest ones)."""
    return firings(make_trigger(schedule), after, until, limit)


def plan_misfires(
    schedule: ScheduleConfig, last_fire: float | None, now: float, limit: int = 10_000
) -> MisfirePlan:
    """Plan the firings in ``(last_fire, now]`` according to the schedule's ``misfire`` policy.

    ``last_fire`` is the latest firing already dealt with (run or recorded as
    skipped); ``None`` means a new schedule, which does not fire for the past.
    A firing ``t`` is within grace when ``now - t <= misfire_grace``. Policies:
    ``skip`` runs none; ``once`` (default) runs the latest firing within grace;
    ``all`` runs every firing within grace (at most ``limit``, the latest).
    Firings older than the grace are always skipped. Pure: pass ``now`` in.
    """
    if last_fire is None or now <= last_fire:
        return MisfirePlan([], [])
    return misfire_plan(make_trigger(schedule), schedule, last_fire, now, limit)


# -- the timer service ----------------------------------------------------------------


class _SinkExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler 3 is untyped
    """Hands due run times straight to :class:`Timers` instead of running anything.

    APScheduler's asyncio executor would start an unstructured asyncio task per
    firing (and a thread for a plain function); jobd runs callbacks in its own
    task group instead. No instance counting: the hand-over cannot overlap.
    """

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        job.func(*job.args, run_times)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        raise NotImplementedError  # submit_job does not call it


class Timers:
    """Fires the engine's callbacks: one wake-up for the earliest due job, and schedules.

    Start with ``await tg.start(timers.run)``; stop by cancelling. Use it from the
    event loop thread only (it is not thread-safe). Callbacks run in the service's
    own tasks, one at a time per kind (the due wake-up, the schedule firings, in
    firing order): keep them short (write to the store, queue, return). An
    exception from a callback is logged and the service carries on.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, max_sleep: float = 60.0) -> None:
        """``clock``: the wall clock (POSIX seconds). ``max_sleep``: the longest the due
        wake-up sleeps before re-reading ``clock``, so a stepped wall clock (NTP,
        suspend) delays a due job by at most that much."""
        self._clock = clock
        self._due = DueTimer(clock, max_sleep)
        self._scheduler: Any = None
        self._schedules: dict[str, ScheduleConfig] = {}
        self._fire: FireCallback | None = None
        #: Per schedule, the latest firing already dealt with (given or dispatched).
        self._fired_upto: dict[str, float] = {}
        self._fired: deque[tuple[ScheduleConfig, float]] = deque()
        self._fired_ready: anyio.Event | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled (asyncio backend only: APScheduler's AsyncIOScheduler)."""
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            executors={"default": _SinkExecutor()},
            # Missed firings after downtime come from plan_misfires and the store;
            # live firings that come late (a stalled loop) are all handed over.
            job_defaults={"coalesce": False, "misfire_grace_time": None},
        )
        scheduler.start()
        self._scheduler = scheduler
        try:
            self._install_schedules()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._due.loop)
                tg.start_soon(self._fire_loop)
                task_status.started()
        finally:
            # Events belong to this run's event loop; a later run makes its own.
            self._scheduler = self._fired_ready = None
            await _shutdown(scheduler)

    # -- the due wake-up (DueTimer) ---------------------------------------------

    def wake_due_at(self, at: float | None, callback: DueCallback) -> None:
        """Call ``callback()`` once at ``at`` (now, if it has passed); ``None`` cancels
        (:meth:`jobd.plan.duetimer.DueTimer.wake_due_at`). May be called before
        :meth:`run` starts."""
        self._due.wake_due_at(at, callback)

    @property
    def due_at(self) -> float | None:
        """The time the due wake-up is set for, if any."""
        return self._due.due_at

    # -- schedules --------------------------------------------------------------------

    def set_schedules(
        self,
        schedules: Sequence[ScheduleConfig],
        fire: FireCallback,
        last_fires: Mapping[str, float | None],
    ) -> None:
        """(Re)build the recurring timers: ``fire(schedule, scheduled_time)`` at each firing.

        Called at start-up and on reload (before or after :meth:`run` starts).
        Raises ``ValueError`` (see :func:`make_trigger`) and changes nothing if a
        schedule is invalid.
        Disabled schedules get no timer. ``last_fires[name]`` is the latest firing
        the engine has dealt with: run, or recorded as skipped by
        :func:`plan_misfires` (pass that call's ``now``). The timer fires every
        firing strictly after it, so the few firings between the engine's ``now``
        and this call are fired (late) rather than lost. Firings older than
        ``misfire_grace`` are never fired here (a warning says so: they belong to
        :func:`plan_misfires`). Missing or ``None``: a new schedule, first firing
        strictly after now. The timers also remember what they fired themselves,
        so a reload never fires a firing twice. Firings already handed over but
        not yet passed to ``fire`` are still delivered after a reload.
        """
        for schedule in schedules:
            make_trigger(schedule)  # a bad schedule raises before anything changes
        self._schedules = {s.name: s for s in schedules}
        self._fire = fire
        for name, t in last_fires.items():
            if t is not None:
                self._fired_upto[name] = max(t, self._fired_upto.get(name, -math.inf))
        if self._scheduler is not None:
            self._install_schedules()

    def next_fire_times(self) -> dict[str, float | None]:
        """Per schedule given to :meth:`set_schedules`, its next firing (``None``: disabled)."""
        out: dict[str, float | None] = {}
        now = self._clock()
        for name, schedule in self._schedules.items():
            job = None if self._scheduler is None else self._scheduler.get_job(_job_id(name))
            if not schedule.enabled:
                out[name] = None
            elif job is not None and job.next_run_time is not None:
                out[name] = float(job.next_run_time.timestamp())
            else:
                trigger = make_trigger(schedule)
                out[name] = trigger.next_after(self._start_point(schedule, now))
        return out

    def _install_schedules(self) -> None:
        scheduler = self._scheduler
        for job in scheduler.get_jobs():
            if job.id.startswith(SCHEDULE_JOB_PREFIX):
                job.remove()
        now = self._clock()
        for schedule in self._schedules.values():
            if schedule.enabled:
                self._install(schedule, now)

    def _install(self, schedule: ScheduleConfig, now: float) -> None:
        trigger = make_trigger(schedule)
        start = self._start_point(schedule, now)
        given = self._fired_upto.get(schedule.name)
        if given is not None and given < start:
            _warn_dropped(schedule, trigger, given, start)
        first = trigger.next_after(start)
        if first is None:
            return
        self._scheduler.add_job(
            self._on_fired,
            trigger=trigger,
            args=(schedule,),
            id=_job_id(schedule.name),
            name=schedule.name,
            next_run_time=datetime.fromtimestamp(first, UTC),
            replace_existing=True,
        )

    def _start_point(self, schedule: ScheduleConfig, now: float) -> float:
        """The live timer fires strictly after this: last dealt-with, within grace of now."""
        upto = self._fired_upto.get(schedule.name)
        return now if upto is None else max(upto, now - schedule.misfire_grace)

    def _on_fired(self, schedule: ScheduleConfig, run_times: Sequence[datetime] = ()) -> None:
        """Called by APScheduler (through the sink executor) on the loop: queue the firings."""
        for run_time in run_times:
            at = float(run_time.timestamp())
            self._fired.append((schedule, at))
            self._fired_upto[schedule.name] = max(at, self._fired_upto.get(schedule.name, at))
        if self._fired_ready is not None:
            self._fired_ready.set()

    async def _fire_loop(self) -> None:
        while True:
            self._fired_ready = ready = anyio.Event()
            while self._fired:
                schedule, at = self._fired.popleft()
                fire = self._fire
                if fire is not None:
                    await guarded(
                        partial(fire, schedule, at),
                        timer="schedule",
                        schedule=schedule.name,
                        scheduled_at=at,
                    )
            await ready.wait()


def _job_id(name: str) -> str:
    return SCHEDULE_JOB_PREFIX + name


def _warn_dropped(
    schedule: ScheduleConfig, trigger: ScheduleTrigger, given: float, start: float
) -> None:
    count, _ = latest(trigger, given, start, 0)
    if count:
        log.warning(
            "schedule firings older than misfire_grace not fired by the timer; "
            "plan them with plan_misfires",
            schedule=schedule.name,
            count=count,
            after=given,
            until=start,
        )


async def _shutdown(scheduler: Any) -> None:
    """Stop APScheduler without waiting for jobs, and let its deferred shutdown land.

    ``AsyncIOScheduler.shutdown`` only schedules the real work with
    ``call_soon_threadsafe``; yielding a few times (shielded: we are usually being
    cancelled) lets it run, so its loop timer is cancelled before ``run`` returns.
    """
    if not scheduler.running:
        return
    scheduler.shutdown(wait=False)
    with anyio.CancelScope(shield=True):
        for _ in range(100):
            if not scheduler.running:
                break
            await anyio.lowlevel.checkpoint()
