from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import pytest
from anyio.abc import TaskGroup
from structlog.testing import capture_logs

from jobd.config import ScheduleConfig
from jobd.plan.alarm import WallClockAlarm
from jobd.plan.timers import (
    MisfirePlan,
    Timers,
    fires_between,
    make_trigger,
    next_fire,
    plan_misfires,
)


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def cron(expr: str, tz: str = "UTC", **kw: Any) -> ScheduleConfig:
    return ScheduleConfig(name="s", workflow="w", cron=expr, timezone=tz, **kw)


def interval(seconds: float, **kw: Any) -> ScheduleConfig:
    return ScheduleConfig(name="tick", workflow="w", interval=seconds, **kw)


# -- cron arithmetic ------------------------------------------------------------------


def test_brussels_spring_forward_fires_at_three_local() -> None:
    nightly = cron("0 2 * * *", "Europe/Brussels")
    assert fires_between(nightly, ts(2026, 3, 27), ts(2026, 3, 31)) == [
        ts(2026, 3, 27, 1),  # 02:00 CET
        ts(2026, 3, 28, 1),
        # 02:00 does not exist on 2026-03-29; APScheduler reads it with the CET
        # offset: 01:00Z, the instant the clocks jump, i.e. 03:00 CEST.
        ts(2026, 3, 29, 1),
        ts(2026, 3, 30, 0),  # 02:00 CEST
        ts(2026, 3, 31, 0),
    ]


def test_brussels_fall_back_fires_once_at_the_first_two_oclock() -> None:
    nightly = cron("0 2 * * *", "Europe/Brussels")
    # APScheduler alone would also fire at 01:00Z (the second 02:00 local).
    assert fires_between(nightly, ts(2026, 10, 22, 12), ts(2026, 10, 27)) == [
        ts(2026, 10, 23, 0),
        ts(2026, 10, 24, 0),
        ts(2026, 10, 25, 0),  # 02:00 CEST, first pass
        ts(2026, 10, 26, 1),  # 02:00 CET
    ]


@pytest.mark.parametrize("day", [(2026, 3, 28, 23), (2026, 10, 24, 23)])
def test_wildcard_hour_keeps_real_time_cadence_across_dst(day: tuple[int, int, int, int]) -> None:
    start = ts(*day)
    halfhourly = cron("*/30 * * * *", "Europe/Brussels")
    assert fires_between(halfhourly, start, start + 4 * 3600) == [
        start + 1800 * k for k in range(1, 9)
    ]


def weekdays(expr: str, after: float, until: float) -> list[str]:
    return [
        datetime.fromtimestamp(t, UTC).strftime("%a %d")
        for t in fires_between(cron(expr), after, until)
    ]


def test_day_of_week_follows_crontab_numbering() -> None:
    week = (ts(2026, 3, 1), ts(2026, 3, 8))  # Sun 1 .. Sun 8
    assert weekdays("0 9 * * 1-5", *week) == ["Mon 02", "Tue 03", "Wed 04", "Thu 05", "Fri 06"]
    for sunday in ("0", "7", "sun", "SUN"):
        assert weekdays(f"0 0 * * {sunday}", *week) == ["Sun 08"]
    assert weekdays("0 0 * * 5-7", *week) == ["Fri 06", "Sat 07", "Sun 08"]
    assert weekdays("0 0 * * 6,0", *week) == ["Sat 07", "Sun 08"]


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    april = (ts(2026, 4, 1), ts(2026, 4, 18))
    # 2026-04-13 is a Monday: crontab fires on the 13th and on each Friday.
    assert weekdays("0 0 13 * 5", *april) == ["Fri 03", "Fri 10", "Mon 13", "Fri 17"]


def test_next_fire_is_strictly_after() -> None:
    daily = cron("0 2 * * *")
    assert next_fire(daily, ts(2026, 1, 1, 2)) == ts(2026, 1, 2, 2)
    assert next_fire(daily, ts(2026, 1, 1, 2) - 0.000_001) == ts(2026, 1, 1, 2)
    assert next_fire(interval(60), 120.0) == 180.0
    assert next_fire(interval(60), 119.5) == 120.0


def test_interval_is_anchored_at_the_epoch() -> None:
    assert fires_between(interval(3600), ts(2026, 5, 1, 10, 20), ts(2026, 5, 1, 13)) == [
        ts(2026, 5, 1, 11),
        ts(2026, 5, 1, 12),
        ts(2026, 5, 1, 13),
    ]
    assert fires_between(interval(7), 0, 30) == [7, 14, 21, 28]
    assert fires_between(interval(1), 0, 100, limit=3) == [1, 2, 3]


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        (cron("0 2 * *"), "5 fields"),
        (cron("61 * * * *"), "cron"),
        (cron("0 0 * * 8"), "day of week"),
        (cron("0 2 * * *", "Mars/Olympus"), "unknown timezone"),
        (interval(0), "interval must be > 0"),
        (ScheduleConfig(name="s", workflow="w"), "exactly one"),
        (ScheduleConfig(name="s", workflow="w", cron="* * * * *", interval=5), "exactly one"),
    ],
)
def test_bad_schedules_raise_value_error_naming_the_schedule(
    schedule: ScheduleConfig, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        make_trigger(schedule)
    assert f"schedule {schedule.name}:" in str(err.value)


# -- misfires -------------------------------------------------------------------------------

NOW = 600_030.0  # firings every 60 s at multiples of 60
MISSED = [599_040.0 + 60 * k for k in range(17)]  # (NOW - 1000, NOW]


def minutely(policy: Literal["skip", "once", "all"], grace: float = 300) -> ScheduleConfig:
    return interval(60, misfire=policy, misfire_grace=grace)


def test_misfire_policies() -> None:
    within = MISSED[-5:]  # NOW - t <= 300
    assert plan_misfires(minutely("skip"), NOW - 1000, NOW) == MisfirePlan([], MISSED)
    assert plan_misfires(minutely("once"), NOW - 1000, NOW) == MisfirePlan(
        [MISSED[-1]], MISSED[:-1]
    )
    assert plan_misfires(minutely("all"), NOW - 1000, NOW) == MisfirePlan(within, MISSED[:-5])


def test_misfire_grace_edges() -> None:
    now = 600_030.0  # the latest firing, 600_000, is 30 s old
    assert plan_misfires(minutely("once", grace=30), 599_500, now).run == [600_000.0]
    edge = plan_misfires(minutely("once", grace=29.9), 599_500, now)
    assert edge.run == [] and edge.skipped[-1] == 600_000.0
    within = [599_700.0 + 60 * k for k in range(6)]  # 599_700 is exactly 330 s old
    assert plan_misfires(minutely("all", grace=330), 599_500, now).run == within
    late = plan_misfires(minutely("all", grace=329.9), 599_500, now)
    assert late.run == within[1:]
    assert late.skipped == [599_520.0, 599_580.0, 599_640.0, 599_700.0]


def test_no_misfires_for_a_new_schedule_or_no_gap() -> None:
    assert plan_misfires(minutely("all"), None, NOW) == MisfirePlan([], [])
    assert plan_misfires(minutely("all"), NOW, NOW) == MisfirePlan([], [])
    assert plan_misfires(minutely("all"), NOW - 10, NOW) == MisfirePlan([], [])


def test_default_policy_is_once_with_an_hour_of_grace() -> None:
    hourly = cron("0 * * * *")
    plan = plan_misfires(hourly, ts(2026, 1, 1), ts(2026, 1, 1, 5, 30))
    assert plan.run == [ts(2026, 1, 1, 5)]
    assert plan.skipped == [ts(2026, 1, 1, h) for h in range(1, 5)]


@pytest.mark.parametrize("policy", ["skip", "once", "all"])
@pytest.mark.parametrize(("period", "gap", "total"), [(1, 1e7, 10_000_000), (60, 86_400, 1440)])
def test_long_downtime_lists_the_latest_skipped_and_counts_the_rest(
    policy: Literal["skip", "once", "all"], period: int, gap: float, total: int
) -> None:
    now = 999_999_960.0  # a whole minute
    schedule = interval(1, misfire=policy) if period == 1 else cron("* * * * *", misfire=policy)
    plan = plan_misfires(schedule, now - gap, now, limit=10)
    assert len(plan.run) + len(plan.skipped) + plan.skipped_omitted == total
    runs = {"skip": 0, "once": 1, "all": 10}[policy]
    assert plan.run == [now - period * k for k in reversed(range(runs))]
    assert plan.skipped == [now - period * (runs + k) for k in reversed(range(10))]


# -- the timer service ------------------------------------------------------------------------


async def started(tg: TaskGroup, timers: Timers) -> None:
    await tg.start(timers.run)


async def test_interval_schedule_fires_twice_and_survives_a_reload() -> None:
    timers = Timers()
    fired: list[float] = []
    twice = anyio.Event()
    schedule = interval(1)

    async def fire(s: ScheduleConfig, at: float) -> None:
        fired.append(at)
        if len(fired) == 1:  # reload mid-flight: must neither repeat nor skip a firing
            timers.set_schedules([schedule], fire, {})
        if len(fired) == 2:
            twice.set()

    tasks_before = asyncio.all_tasks()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            timers.set_schedules([schedule], fire, {})
            await started(tg, timers)
            await twice.wait()
            assert timers.next_fire_times() == {"tick": fired[1] + 1}
            tg.cancel_scope.cancel()
    assert fired[1] == fired[0] + 1 and fired[0] == int(fired[0])
    assert asyncio.all_tasks() == tasks_before


async def test_schedule_callback_errors_are_logged_and_firing_goes_on() -> None:
    timers = Timers()
    calls: list[float] = []
    second = anyio.Event()

    async def fire(s: ScheduleConfig, at: float) -> None:
        calls.append(at)
        if len(calls) == 2:
            second.set()
        raise RuntimeError("engine hiccup")

    with capture_logs() as logs, anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await started(tg, timers)
            timers.set_schedules([interval(0.25)], fire, {})
            await second.wait()
            tg.cancel_scope.cancel()
    failures = [e for e in logs if e["event"] == "timer callback failed"]
    assert len(failures) >= 1 and failures[0]["schedule"] == "tick"
    assert failures[0]["log_level"] == "error"


def test_disabled_schedule_has_no_next_fire_time() -> None:
    timers = Timers(clock=lambda: 1000.5)

    async def fire(s: ScheduleConfig, at: float) -> None:
        raise AssertionError

    off = dataclasses.replace(interval(10), name="off", enabled=False)
    timers.set_schedules([interval(10), off], fire, {})
    assert timers.next_fire_times() == {"tick": 1010.0, "off": None}


def test_last_fires_resume_the_timer_and_stale_ones_are_clamped_to_grace() -> None:
    timers = Timers(clock=lambda: 1000.5)

    async def fire(s: ScheduleConfig, at: float) -> None:
        raise AssertionError

    timers.set_schedules([interval(10, misfire_grace=100)], fire, {"tick": 980.0})
    assert timers.next_fire_times() == {"tick": 990.0}  # fired late, not lost
    timers.set_schedules([interval(10, misfire_grace=100)], fire, {"tick": 100.0})
    assert timers.next_fire_times() == {"tick": 990.0}  # remembers the later one
    fresh = Timers(clock=lambda: 1000.5)
    fresh.set_schedules([interval(10, misfire_grace=100)], fire, {"tick": 100.0})
    assert fresh.next_fire_times() == {"tick": 910.0}  # older than grace: plan_misfires' job


async def test_stale_last_fire_warns_and_late_firings_are_delivered_in_order() -> None:
    now = time.time()
    schedule = interval(1, misfire_grace=3)
    expected = fires_between(schedule, now - 3, now)
    timers = Timers()
    fired: list[float] = []
    enough = anyio.Event()

    async def fire(s: ScheduleConfig, at: float) -> None:
        fired.append(at)
        if len(fired) == len(expected):
            enough.set()

    with capture_logs() as logs, anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            timers.set_schedules([schedule], fire, {"tick": now - 100})
            await started(tg, timers)
            await enough.wait()
            tg.cancel_scope.cancel()
    assert fired[: len(expected)] == expected
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and warnings[0]["schedule"] == "tick" and warnings[0]["count"] >= 90


async def test_wake_due_at_fires_once() -> None:
    timers = Timers()
    calls = 0
    done = anyio.Event()

    async def due() -> None:
        nonlocal calls
        calls += 1
        done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            timers.wake_due_at(time.time() + 0.05, due)  # before run: kept
            await started(tg, timers)
            await done.wait()
            await anyio.wait_all_tasks_blocked()
            assert timers.due_at is None
            tg.cancel_scope.cancel()
    assert calls == 1


async def test_wake_due_at_replacement_and_none_cancel() -> None:
    timers, witness = Timers(), Timers()
    calls: list[str] = []
    done = anyio.Event()

    def callback(name: str) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            calls.append(name)
            done.set()

        return call

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await started(tg, timers)
            await started(tg, witness)
            now = time.time()
            timers.wake_due_at(now + 0.02, callback("replaced"))
            await anyio.wait_all_tasks_blocked()  # the first timer is armed
            timers.wake_due_at(now + 0.05, callback("cancelled"))
            await anyio.wait_all_tasks_blocked()
            timers.wake_due_at(None, callback("nothing"))
            # An independent timer due after both: when it fires, theirs have passed.
            witness.wake_due_at(now + 0.1, callback("witness"))
            await done.wait()
            tg.cancel_scope.cancel()
    assert calls == ["witness"]


async def test_wake_due_at_errors_are_logged_and_past_times_fire_at_once() -> None:
    timers = Timers()
    done = anyio.Event()

    async def broken() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        done.set()

    with capture_logs() as logs, anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await started(tg, timers)
            timers.wake_due_at(0.0, broken)
            await anyio.wait_all_tasks_blocked()
            timers.wake_due_at(time.time() - 3600, fine)
            await done.wait()
            tg.cancel_scope.cancel()
    assert [e["timer"] for e in logs if e["event"] == "timer callback failed"] == ["due"]


async def test_wall_clock_jump_is_noticed_within_max_sleep() -> None:
    wall = [1000.0]
    timers = Timers(clock=lambda: wall[0], max_sleep=0.01)
    done = anyio.Event()

    async def due() -> None:
        done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await started(tg, timers)
            timers.wake_due_at(1_000_000.0, due)  # days away by this clock
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            wall[0] = 1_000_000.0  # the wall clock is stepped forward
            await done.wait()
            tg.cancel_scope.cancel()


def test_odd_interval_counts_agree_with_walking() -> None:
    third = interval(1 / 3, misfire="skip", misfire_grace=2)
    walked = fires_between(third, 1000.05, 1100.0, limit=1000)
    plan = plan_misfires(third, 1000.05, 1100.0, limit=5)
    assert len(plan.skipped) + plan.skipped_omitted == len(walked)
    assert plan.skipped == walked[-5:]


def test_invalid_schedule_on_reload_changes_nothing() -> None:
    timers = Timers(clock=lambda: 1000.5)

    async def fire(s: ScheduleConfig, at: float) -> None:
        raise AssertionError

    timers.set_schedules([interval(10)], fire, {})
    with pytest.raises(ValueError, match="schedule s: cron"):
        timers.set_schedules([interval(5), cron("not a cron at all")], fire, {})
    assert timers.next_fire_times() == {"tick": 1010.0}


async def test_timers_can_run_again_after_being_stopped() -> None:
    timers = Timers()
    for _ in range(2):
        done = anyio.Event()

        async def due(done: anyio.Event = done) -> None:
            done.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await started(tg, timers)
                timers.wake_due_at(time.time(), due)
                await done.wait()
                tg.cancel_scope.cancel()


async def test_due_wake_ups_on_the_wall_clock_are_never_early() -> None:
    # The loop's own timers count in milliseconds and may wake before the time asked;
    # jobd's due wake-up must not start a job before it is due.
    timers = Timers()
    first = time.time() + 0.05
    due_times = [first + k * 0.0037 for k in range(20)]
    seen: list[tuple[float, float]] = []
    done = anyio.Event()

    def callback(at: float) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            seen.append((at, time.time()))
            if len(seen) < len(due_times):
                timers.wake_due_at(due_times[len(seen)], callback(due_times[len(seen)]))
            else:
                done.set()

        return call

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await started(tg, timers)
            timers.wake_due_at(due_times[0], callback(due_times[0]))
            await done.wait()
            tg.cancel_scope.cancel()
    assert [at for at, _ in seen] == due_times
    assert all(fired >= at for at, fired in seen)


async def test_the_alarm_fires_at_once_for_a_past_time_and_rearming_replaces() -> None:
    rang: list[float] = []
    ring = anyio.Event()

    def on_ring() -> None:
        rang.append(time.time())
        ring.set()

    alarm = WallClockAlarm.create(on_ring)
    if alarm is None:
        pytest.skip("no timerfd on this platform")
    try:
        with anyio.fail_after(10):
            alarm.arm(time.time() - 5)
            await ring.wait()
            ring = anyio.Event()
            alarm.arm(time.time() + 3600)  # replaced below: were it kept, this would hang
            at = time.time() + 0.02
            alarm.arm(at)
            await ring.wait()
        assert len(rang) == 2 and rang[1] >= at
    finally:
        alarm.close()
