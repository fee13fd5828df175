"""Recurring ``[[schedules]]`` through the real engine: live firings, overlap, misfire.

Live firings use real one-second intervals and wait on the engine's state. Missed
firings use frozen clocks far ahead of the real time: the engine runs, stops, and
starts again with its clock moved on by a few intervals, as after downtime. (The
live APScheduler timer measures real time, so with a clock ten days ahead its next
firing never comes during a test; only the catch-up at start-up acts.)
"""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobd.config import Config, ResourceConfig, ScheduleConfig
from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState
from jobd.engine import Engine
from tests.enginekit import (
    make_config,
    running_engine,
    step,
    wait_all,
    wait_state,
    wait_until,
    workflow,
)

S = JobState


def _config(tmp: Path, *schedules: ScheduleConfig) -> Config:
    flows = [
        workflow("noop", step("a", "t-noop")),
        workflow("hang", step("h", "t-hang")),
        workflow("gated", step("g", "t-record", params={"log": "{log}", "gate": "{gate}"})),
    ]
    return make_config(tmp, flows, schedules=schedules)


def schedule(name: str = "s", **kw: Any) -> ScheduleConfig:
    kw.setdefault("workflow", "noop")
    if "cron" not in kw:
        kw.setdefault("interval", 1)
    return ScheduleConfig(name=name, **kw)


async def scheduled_jobs(engine: Engine, name: str = "s") -> list[Job]:
    jobs, _ = await engine.list_jobs(limit=1000)
    return sorted((j for j in jobs if j.spec.schedule == name), key=lambda j: j.id)


async def info(engine: Engine, name: str = "s") -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in await engine.schedules_info() if s["name"] == name)
    return found


# ------------------------------------------------------------------------ live firings


async def test_interval_schedule_fires_repeatedly(tmp_path: Path) -> None:
    config = _config(tmp_path, schedule(params={"k": "v"}, priority=3))
    async with running_engine(config) as engine:

        async def two_fired() -> bool:
            return len(await scheduled_jobs(engine)) >= 2

        await wait_until(two_fired)
        jobs = await scheduled_jobs(engine)
        done = await wait_all(engine, [j.id for j in jobs[:2]])
        state = await info(engine)
    assert [j.state for j in done] == [S.COMPLETED, S.COMPLETED]
    first = done[0]
    assert (first.spec.workflow, first.spec.params, first.spec.priority) == ("noop", {"k": "v"}, 3)
    assert first.history[0].actor == "schedule:s"
    fired = [e for e in state["recent"] if e["kind"] == "fired"]
    assert len(fired) >= 2 and all(e["job_id"] is not None for e in fired)
    # Epoch-anchored one-second grid.
    assert all(e["fire_time"] == math.floor(e["fire_time"]) for e in fired)
    assert state["last_job_id"] is not None and state["last_fire_at"] is not None
    assert state["next_fire_at"] > state["last_fire_at"]
    assert (state["missed"], state["skipped"]) == (0, 0)


async def test_overlap_skip_records_the_skipped_firing(tmp_path: Path) -> None:
    config = _config(tmp_path, schedule(workflow="hang", overlap="skip"))
    async with running_engine(config) as engine:

        async def skipped() -> bool:
            return bool((await info(engine))["skipped"] >= 1)

        await wait_until(skipped)
        jobs = await scheduled_jobs(engine)
        state = await info(engine)
        assert len(jobs) == 1 and jobs[0].state == S.RUNNING
        event = next(e for e in state["recent"] if e["kind"] == "skipped")
        assert "still running" in event["reason"] and event["job_id"] is None
        assert state["last_job_id"] == jobs[0].id
        await engine.operate(jobs[0].id, "cancel")


async def test_overlap_queue_makes_the_next_job_wait(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    config = _config(
        tmp_path,
        schedule(
            "q",
            workflow="gated",
            overlap="queue",
            assets=("tape",),
            params={"gate": str(gate), "log": str(tmp_path / "log")},
        ),
    )
    async with running_engine(config) as engine:

        async def two_fired() -> bool:
            return len(await scheduled_jobs(engine, "q")) >= 2

        await wait_until(two_fired)
        first, second = (await scheduled_jobs(engine, "q"))[:2]
        assert second.spec.assets == ("tape", "schedule:q")
        await wait_state(engine, first.id, S.RUNNING)
        waiting = await wait_state(engine, second.id, S.WAITING_FOR_LOCK)
        assert waiting.steps[0].attempts == 0
        gate.touch()
        done = await wait_all(engine, [first.id, second.id])
        assert [j.state for j in done] == [S.COMPLETED, S.COMPLETED]
        assert (await info(engine, "q"))["skipped"] == 0


async def test_overlap_allow_runs_side_by_side(tmp_path: Path) -> None:
    config = _config(tmp_path, schedule(workflow="hang", overlap="allow"))
    async with running_engine(config) as engine:

        async def two_running() -> bool:
            jobs = await scheduled_jobs(engine)
            return sum(j.state == S.RUNNING for j in jobs) >= 2

        await wait_until(two_running)
        assert (await info(engine))["skipped"] == 0
        for job in await scheduled_jobs(engine):
            await engine.operate(job.id, "cancel")


# ------------------------------------------------------------------------ missed firings

#: A grid point (multiple of 60 s) ten days ahead of the real time.
G = (math.floor(time.time() / 60) + 14_400) * 60.0


async def downtime(
    config: Config, stopped_at: float, restarted_at: float
) -> tuple[list[Job], dict[str, Any]]:
    """Run the engine at ``stopped_at`` (a new schedule: nothing to catch up), stop it, start
    it again at ``restarted_at``; the scheduled jobs (run to their end) and the schedule."""
    async with running_engine(config, clock=lambda: stopped_at) as engine:
        assert await scheduled_jobs(engine) == []
        assert (await info(engine))["last_fire_at"] == stopped_at
    async with running_engine(config, clock=lambda: restarted_at) as engine:
        jobs = await wait_all(engine, [j.id for j in await scheduled_jobs(engine)])
        state = await info(engine)
    # A further restart at the same time finds nothing more to catch up.
    async with running_engine(config, clock=lambda: restarted_at) as engine:
        assert len(await scheduled_jobs(engine)) == len(jobs)
        assert (await info(engine))["missed"] == state["missed"]
    return jobs, state


def fire_times(state: dict[str, Any], kind: str) -> list[float]:
    return sorted(e["fire_time"] for e in state["recent"] if e["kind"] == kind)


MISSED = [G + 60 * k for k in range(5)]  # stopped at G - 55, restarted at G + 270


@pytest.mark.parametrize(
    ("policy", "run", "missed"),
    [
        ("skip", [], MISSED),
        ("once", MISSED[-1:], MISSED[:-1]),
        ("all", MISSED, []),
    ],
)
async def test_misfire_policy_after_downtime(
    tmp_path: Path, policy: str, run: list[float], missed: list[float]
) -> None:
    config = _config(tmp_path, schedule(interval=60, misfire=policy, overlap="allow"))
    jobs, state = await downtime(config, G - 55, G + 270)
    assert [j.state for j in jobs] == [S.COMPLETED] * len(run)
    assert fire_times(state, "fired") == run
    assert fire_times(state, "missed") == missed
    assert state["missed"] == len(missed) and state["skipped"] == 0
    assert all(f"misfire={policy}" in e["reason"] for e in state["recent"] if e["kind"] == "missed")
    assert state["last_fire_at"] == MISSED[-1]
    assert state["next_fire_at"] == G + 300


@pytest.mark.parametrize(
    ("policy", "grace", "restarted_at", "run"),
    [
        # A firing exactly misfire_grace old is still within grace.
        ("all", 120, G + 360, [G + 240, G + 300, G + 360]),
        ("all", 120, G + 360.5, [G + 300, G + 360]),
        ("once", 120, G + 360, [G + 360]),
        # Every firing older than the grace: none runs, whatever the policy.
        ("all", 10, G + 270, []),
        ("once", 10, G + 270, []),
    ],
)
async def test_misfire_grace_edges(
    tmp_path: Path, policy: str, grace: float, restarted_at: float, run: list[float]
) -> None:
    config = _config(
        tmp_path, schedule(interval=60, misfire=policy, overlap="allow", misfire_grace=grace)
    )
    jobs, state = await downtime(config, G - 55, restarted_at)
    every = [G + 60 * k for k in range(7) if G + 60 * k <= restarted_at]
    assert fire_times(state, "fired") == run and len(jobs) == len(run)
    assert fire_times(state, "missed") == [t for t in every if t not in run]
    assert state["missed"] == len(every) - len(run)


async def test_cron_schedule_catches_up_in_its_timezone_across_dst(tmp_path: Path) -> None:
    """09:00 on weekdays in New York over the week in which DST starts (2100-03-14)."""
    zone = ZoneInfo("America/New_York")
    config = _config(
        tmp_path,
        schedule(
            cron="0 9 * * 1-5",
            timezone="America/New_York",
            misfire="all",
            overlap="allow",
            misfire_grace=10 * 86400,
        ),
    )
    stopped = datetime(2100, 3, 11, tzinfo=UTC).timestamp()  # a Thursday
    jobs, state = await downtime(config, stopped, stopped + 7 * 86400)
    fired = fire_times(state, "fired")
    assert len(fired) == len(jobs) == 5
    local = [datetime.fromtimestamp(t, zone) for t in fired]
    assert [d.day for d in local] == [11, 12, 15, 16, 17]
    assert all((d.hour, d.minute) == (9, 0) for d in local)
    assert [datetime.fromtimestamp(t, UTC).hour for t in fired] == [14, 14, 13, 13, 13]


async def test_schedule_books_its_resource_at_each_firing(tmp_path: Path) -> None:
    config = _config(
        tmp_path, schedule(misfire="all", overlap="allow", resources=("studio",), interval=60)
    )
    config = dataclasses.replace(config, resources={"studio": ResourceConfig("studio")})
    jobs, state = await downtime(config, G - 55, G + 150)
    assert [j.state for j in jobs] == [S.COMPLETED] * 3
    assert fire_times(state, "fired") == [G, G + 60, G + 120]
    assert [(j.spec.start_at, j.spec.end_at) for j in jobs] == [
        (G, G),
        (G + 60, G + 60),
        (G + 120, G + 120),
    ]
    assert all(j.reservations == [] for j in jobs)  # released at the end
    # A booking holding the resource at the firing time: that firing is refused, on record.
    async with running_engine(config, clock=lambda: G + 150) as engine:
        blocker = await engine.submit(
            JobSpec(
                "noop", resources=("studio",), start_at=G + 170, end_at=G + 190, state=S.TENTATIVE
            )
        )
    async with running_engine(config, clock=lambda: G + 200) as engine:
        state = await info(engine)
        assert (await engine.get_job(blocker.id)).state == S.TENTATIVE
    refused = next(e for e in state["recent"] if e["fire_time"] == G + 180)
    assert refused["kind"] == "skipped" and f"by jobs {blocker.id}" in refused["reason"]


async def test_schedule_added_by_reload_counts_missed_firings_after_downtime(
    tmp_path: Path,
) -> None:
    bare = _config(tmp_path)
    config = dataclasses.replace(bare, schedules=(schedule(interval=60, misfire="skip"),))
    async with running_engine(bare, clock=lambda: G - 55) as engine:
        assert await engine.reload(config) == []
        assert (await info(engine))["last_fire_at"] == G - 55
    async with running_engine(config, clock=lambda: G + 270) as engine:
        state = await info(engine)
    assert fire_times(state, "missed") == MISSED


async def test_schedule_enabled_by_reload_fires_from_then_on(tmp_path: Path) -> None:
    """The firings of the time it was disabled are neither fired nor counted as missed."""
    offset = [-20.0]
    disabled = _config(tmp_path, schedule(interval=2, enabled=False, overlap="allow"))
    enabled = dataclasses.replace(disabled, schedules=(schedule(interval=2, overlap="allow"),))
    async with running_engine(disabled, clock=lambda: time.time() + offset[0]) as engine:
        offset[0] = 0.0  # twenty seconds later
        reloaded = time.time()
        await engine.reload(enabled)

        async def fired() -> bool:
            return bool(await scheduled_jobs(engine))

        await wait_until(fired)
        state = await info(engine)
    assert all(e["fire_time"] > reloaded for e in state["recent"])
    assert (state["missed"], state["skipped"]) == (0, 0)
