"""Recurring schedules: each firing submits a job; missed and skipped firings are recorded.

The clock arithmetic (cron, intervals, misfire plans) lives in :mod:`jobd.plan.timers`;
this module decides what a firing does (SPEC §3.1): ``overlap`` while the
schedule's previous job still runs, ``misfire`` for firings missed while jobd
was down, and it writes every firing that did not start a job to
``schedule_events`` so that none is silently dropped.

On a cluster every node runs the timers and fires every firing; the database keeps
ONE record per firing (``schedule_firings``, unique ``(schedule, fire_time)``, filled
in the transaction that writes the firing's event, and for a fired one its job): the
first node's write wins, the others' fail their guard (:class:`GuardFailed`) and
write nothing. So each firing makes one job and a missed firing is counted once, with
no scheduler role to hand over when a node dies. Firings missed while the whole
cluster was down (due before any node that is up started) are caught up by every node
that starts, and recorded once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import anyio
import structlog

from jobd.config import Config, ScheduleConfig
from jobd.core.errors import JobdError, NotApplicable, NotFound
from jobd.core.models import Job, JobSpec
from jobd.core.states import ACTIVE, JobState
from jobd.plan.timers import Timers, make_trigger, plan_misfires
from jobd.store import GuardFailed, Store

log = structlog.get_logger("jobd.schedules")
#: A previous job in one of these states is "still running" for ``overlap``.
BUSY = ACTIVE | {JobState.CONFIRMED, JobState.PENDING, JobState.PAUSED}
#: Why a firing made no job here: another node of the cluster recorded it first.
_ELSEWHERE = "another node recorded this firing first"


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

    async def nodes_info(self) -> list[dict[str, Any]]: ...

    async def submit(
        self,
        spec: JobSpec,
        *,
        actor: str = ...,
        cause: str = ...,
        firing: tuple[str, float] | None = ...,
    ) -> Job: ...


class Schedules:
    def __init__(self, engine: ScheduleHost) -> None:
        self.engine = engine
        #: Paused schedules and since when (kept in the store: ``schedules.paused_at``).
        self.paused: dict[str, float] = {}

    async def start(self) -> None:
        """Run or record the firings missed while jobd was down, then arm the live timers.

        Missed means: due while no node ran. So a node catches up only to the start of the
        earliest other node that is up (or to now, alone): a firing after that start is
        that node's to fire, and one this node took for missed might be the one that node
        is writing at this moment. The live timers then fire (late) what came since; the
        database keeps one record of each firing, so nodes that start together and catch
        up together still count each miss once."""
        engine = self.engine
        rows = await engine.store.schedule_rows()
        now = engine.clock()
        self.paused = {n: r["paused_at"] for n, r in rows.items() if r["paused_at"] is not None}
        cutoff = min([now, *await self._others_started(now)])
        # What the live timers fire after: everything up to the cutoff is caught up here.
        handled: dict[str, float | None] = {}
        for schedule in engine.config.schedules:
            last = rows.get(schedule.name, {}).get("last_fire_at")
            handled[schedule.name] = now
            if self._live(schedule) and last is not None:
                await self._catch_up(schedule, last, cutoff)
                handled[schedule.name] = max(last, cutoff)
        for schedule in engine.config.schedules:
            # New, disabled or paused: the time until now is not missed (enabling or
            # resuming it later starts from here).
            if rows.get(schedule.name, {}).get("last_fire_at") is None or not self._live(schedule):
                await self._record(schedule.name, now, None, None, None)
        engine.timers.set_schedules(engine.config.schedules, self.fire, handled)

    async def _others_started(self, now: float) -> list[float]:
        """When each other node of the cluster that is up (its lease running) started (one
        node: none)."""
        me = self.engine.config.daemon.node
        return [
            float(n.get("started_at") or now)
            for n in await self.engine.nodes_info()
            if n["name"] != me
            and n["state"] == "up"
            and (n.get("renewed_at") or 0.0) + (n.get("lease") or 0.0) > now
        ]

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
            # At the first firing missed (one no other event names): on a cluster, nodes
            # that catch up together record this summary once, as every other firing.
            first = make_trigger(schedule).next_after(last)
            await self._record(
                schedule.name,
                last if first is None else first,
                None,
                "missed",
                f"{plan.skipped_omitted} more firings {reason}, too many to list one by one",
            )
        for fire_time in plan.run:
            await self.fire(schedule, fire_time)

    def _live(self, schedule: ScheduleConfig) -> bool:
        """Fires by itself: enabled in the config and not paused by an operator."""
        return schedule.enabled and schedule.name not in self.paused

    async def fire(self, schedule: ScheduleConfig, fire_time: float) -> None:
        """One timer firing (see :meth:`_fire`)."""
        await self._fire(schedule, fire_time)

    async def _fire(
        self, schedule: ScheduleConfig, fire_time: float, actor: str | None = None
    ) -> Job | str | None:
        """One firing: submit the schedule's job, or record why not (returned). A paused
        schedule's timer firings are left out (the operator stopped them; None), unless
        ``actor`` fires it by hand (``POST /v1/schedules/{name}/run``)."""
        engine = self.engine
        if not engine.accepting or (actor is None and schedule.name in self.paused):
            return None
        if schedule.overlap == "skip" and await self._busy(schedule.name):
            reason = "the previous job of this schedule is still running (overlap = skip)"
            await self._record(schedule.name, fire_time, None, "skipped", reason)
            return reason
        try:
            return await engine.submit(
                job_spec(schedule, fire_time),
                actor=actor or f"schedule:{schedule.name}",
                firing=(schedule.name, fire_time),
            )
        except GuardFailed:
            return _ELSEWHERE
        except JobdError as exc:
            reason = f"submission refused: {exc}"
            await self._record(schedule.name, fire_time, None, "skipped", reason)
            return reason

    def find(self, name: str) -> ScheduleConfig:
        """The configured schedule ``name``; NotFound (404) naming the configured ones."""
        for schedule in self.engine.config.schedules:
            if schedule.name == name:
                return schedule
        known = ", ".join(s.name for s in self.engine.config.schedules) or "none"
        raise NotFound("schedule", f"{name!r} (configured: {known})")

    async def run_now(self, name: str, actor: str) -> Job:
        """Fire ``name`` now, paused or not; NotApplicable (409) with the reason if the
        firing was skipped (overlap) or its job refused (the skip is recorded)."""
        outcome = await self._fire(self.find(name), self.engine.clock(), actor)
        if not isinstance(outcome, Job):
            raise NotApplicable(
                f"schedule {name!r} did not fire: {outcome or 'jobd is shutting down'}",
                {"schedule": name, "reason": outcome},
            )
        return outcome

    async def set_paused(self, name: str, paused: bool, actor: str) -> dict[str, Any]:
        """Pause or resume ``name`` (no change if it already is); kept in the store, so a
        restart keeps it. Resuming fires from now on: the paused time is not missed.
        Returns the schedule as :meth:`info` shows it."""
        schedule = self.find(name)
        now = self.engine.clock()
        if paused != (name in self.paused):
            store = self.engine.store
            unit = store.changes().set_schedule_paused(name, now if paused else None, now, actor)
            if not paused:  # resuming fires from now: the paused time is not missed
                unit.record_firing(name, now, None)
            await store.commit(unit)
            if paused:
                self.paused[name] = now
            else:
                self.paused.pop(name, None)
            log.info(
                "schedule paused" if paused else "schedule resumed", schedule=name, actor=actor
            )
        return await self._info_of(schedule, await self.engine.store.schedule_rows())

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
        """Remember a firing; ``kind`` None only moves the schedule's clock forward. On a
        cluster, another node may have recorded the same firing first: then nothing is."""
        engine = self.engine
        unit = engine.store.changes().record_firing(
            name, fire_time, kind, job_id=job_id, reason=reason, at=engine.clock()
        )
        try:
            await engine.store.commit(unit)
        except GuardFailed:
            return  # another node dealt with this firing (and logged it)
        if kind is not None and kind != "fired":
            log.warning("schedule firing not run", schedule=name, kind=kind, reason=reason)

    async def info(self) -> list[dict[str, Any]]:
        """Per schedule: ``{name, workflow, cron, interval, timezone, next_fire_at,
        last_fire_at, last_job_id, missed, skipped, overlap, misfire, paused, paused_at,
        recent}``."""
        rows = await self.engine.store.schedule_rows()
        return [await self._info_of(s, rows) for s in self.engine.config.schedules]

    async def _info_of(self, s: ScheduleConfig, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        engine = self.engine
        row = rows.get(s.name, {})
        paused_at = self.paused.get(s.name)
        return {
            "name": s.name,
            "workflow": s.workflow,
            "cron": s.cron,
            "interval": s.interval,
            "timezone": s.timezone,
            "overlap": s.overlap,
            "misfire": s.misfire,
            "enabled": s.enabled,
            "paused": paused_at is not None,
            "paused_at": paused_at,
            # Paused: the timer's next tick will not fire.
            "next_fire_at": None
            if paused_at is not None
            else engine.timers.next_fire_times().get(s.name),
            "last_fire_at": row.get("last_fire_at"),
            "last_job_id": row.get("last_job_id"),
            "missed": row.get("missed", 0),
            "skipped": row.get("skipped", 0),
            "recent": await engine.store.schedule_events(s.name, 10),
        }


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
