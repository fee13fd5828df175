"""Recurring schedules: each firing submits a job; missed and skipped firings are recorded.

The clock arithmetic (cron, intervals, misfire plans) lives in :mod:`jobd.timers`;
this module decides what a firing does (SPEC §3.1): ``overlap`` while the
schedule's previous job still runs, ``misfire`` for firings missed while jobd
was down, and it writes every firing that did not start a job to
``schedule_events`` so that none is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import anyio
import structlog

from jobd.config import Config, ScheduleConfig
from jobd.errors import JobdError
from jobd.models import Job, JobSpec
from jobd.states import ACTIVE, JobState
from jobd.store import Store
from jobd.timers import Timers, plan_misfires

log = structlog.get_logger("jobd.schedules")
#: A previous job in one of these states is "still running" for ``overlap``.
BUSY = ACTIVE | {JobState.CONFIRMED, JobState.PENDING, JobState.PAUSED}


class ScheduleHost(Protocol):
    """What a schedule's firing needs (the engine's façade is one): no import of the engine."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def accepting(self) -> bool: ...

    timers: Timers

    async def submit(self, spec: JobSpec, *, actor: str = ..., cause: str = ...) -> Job: ...


class Schedules:
    def __init__(self, engine: ScheduleHost) -> None:
        self.engine = engine

    async def start(self) -> None:
        """Run or record the firings missed while jobd was down, then arm the live timers."""
        engine = self.engine
        rows = await engine.store.schedule_rows()
        now = engine.clock()
        for schedule in engine.config.schedules:
            last = rows.get(schedule.name, {}).get("last_fire_at")
            if schedule.enabled and last is not None:
                await self._catch_up(schedule, last, now)
        # Everything up to now is handled: the live timers must not fire it again.
        handled = {s.name: now for s in engine.config.schedules}
        for schedule in engine.config.schedules:
            # New, or disabled: the time until now is not missed (enabling it later starts
            # from here).
            if rows.get(schedule.name, {}).get("last_fire_at") is None or not schedule.enabled:
                await self._record(schedule.name, now, None, None, None)
        engine.timers.set_schedules(engine.config.schedules, self.fire, handled)

    async def reload(self, previously_enabled: set[str]) -> None:
        """Re-arm the timers after a config reload; new or re-enabled schedules fire from now."""
        engine = self.engine
        rows = await engine.store.schedule_rows()
        now = engine.clock()
        for schedule in engine.config.schedules:
            if schedule.name not in rows or (
                schedule.enabled and schedule.name not in previously_enabled
            ):
                # New or (re-)enabled: it fires from now on; nothing before is missed.
                await self._record(schedule.name, now, None, None, None)
                rows[schedule.name] = {"last_fire_at": now}
        engine.timers.set_schedules(
            engine.config.schedules, self.fire, {n: r.get("last_fire_at") for n, r in rows.items()}
        )

    async def _catch_up(self, schedule: ScheduleConfig, last: float, now: float) -> None:
        plan = await anyio.to_thread.run_sync(plan_misfires, schedule, last, now)
        reason = f"missed while jobd was down (misfire={schedule.misfire})"
        for fire_time in plan.skipped:
            await self._record(schedule.name, fire_time, None, "missed", reason)
        if plan.skipped_omitted:
            await self._record(
                schedule.name,
                last,
                None,
                "missed",
                f"{plan.skipped_omitted} more firings {reason}, too many to list one by one",
            )
        for fire_time in plan.run:
            await self.fire(schedule, fire_time)

    async def fire(self, schedule: ScheduleConfig, fire_time: float) -> None:
        """One firing: submit the schedule's job, or record why not."""
        engine = self.engine
        if not engine.accepting:
            return
        if schedule.overlap == "skip" and await self._busy(schedule.name):
            await self._record(
                schedule.name,
                fire_time,
                None,
                "skipped",
                "the previous job of this schedule is still running",
            )
            return
        try:
            job = await engine.submit(
                job_spec(schedule, fire_time), actor=f"schedule:{schedule.name}"
            )
        except JobdError as exc:
            await self._record(
                schedule.name, fire_time, None, "skipped", f"submission refused: {exc}"
            )
            return
        await self._record(schedule.name, fire_time, job.id, "fired", None)

    async def _busy(self, name: str) -> bool:
        store = self.engine.store
        row = (await store.schedule_rows()).get(name)
        if not row or row.get("last_job_id") is None:
            return False
        job_id = row["last_job_id"]
        states = await store.job_states([job_id])
        return job_id in states and states[job_id][1] in BUSY

    async def _record(
        self, name: str, fire_time: float, job_id: int | None, kind: str | None, reason: str | None
    ) -> None:
        """Remember a firing; ``kind`` None only moves the schedule's clock forward."""
        engine = self.engine
        unit = engine.store.changes().record_firing(
            name, fire_time, kind, job_id=job_id, reason=reason, at=engine.clock()
        )
        if kind is not None and kind != "fired":
            log.warning("schedule firing not run", schedule=name, kind=kind, reason=reason)
        await engine.store.commit(unit)

    async def info(self) -> list[dict[str, Any]]:
        """Per schedule: ``{name, workflow, cron, interval, timezone, next_fire_at,
        last_fire_at, last_job_id, missed, skipped, overlap, misfire, recent}``."""
        engine = self.engine
        rows = await engine.store.schedule_rows()
        nexts = engine.timers.next_fire_times()
        out = []
        for s in engine.config.schedules:
            row = rows.get(s.name, {})
            out.append(
                {
                    "name": s.name,
                    "workflow": s.workflow,
                    "cron": s.cron,
                    "interval": s.interval,
                    "timezone": s.timezone,
                    "overlap": s.overlap,
                    "misfire": s.misfire,
                    "enabled": s.enabled,
                    "next_fire_at": nexts.get(s.name),
                    "last_fire_at": row.get("last_fire_at"),
                    "last_job_id": row.get("last_job_id"),
                    "missed": row.get("missed", 0),
                    "skipped": row.get("skipped", 0),
                    "recent": await engine.store.schedule_events(s.name, 10),
                }
            )
        return out


def job_spec(schedule: ScheduleConfig, fire_time: float) -> JobSpec:
    """The job a firing submits. ``overlap = "queue"`` adds the implicit exclusive asset
    ``schedule:<name>``, so each job waits for the previous one in FIFO order."""
    assets = schedule.assets
    if schedule.overlap == "queue":
        assets = (*assets, f"schedule:{schedule.name}")
    spec = JobSpec(
        workflow=schedule.workflow,
        name=schedule.name,
        params=dict(schedule.params),
        assets=tuple(assets),
        shared_assets=schedule.shared_assets,
        resources=schedule.resources,
        pools=schedule.pools,
        priority=schedule.priority,
        timeout=schedule.timeout,
        schedule=schedule.name,
    )
    if schedule.resources or schedule.pools:
        # A booking needs a span: the schedule books its resources at the firing time.
        spec = replace(spec, start_at=fire_time, end_at=fire_time)
    return spec
