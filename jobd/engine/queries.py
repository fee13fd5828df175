"""What the engine answers without changing anything: jobs, logs, the queue, locks,
resources, bookings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobd.core.errors import NotFound
from jobd.core.models import Job
from jobd.core.states import JobState
from jobd.engine.context import Context
from jobd.engine.lineup import Lineup
from jobd.engine.ports import LockView, QueueState, RunningState, WindowView
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex
from jobd.store import JobFilter

S = JobState


class Queries:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        bookings: BookingIndex,
        queue: QueueState,
        running: RunningState,
        locks: LockView,
        windows: WindowView,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._bookings = bookings
        self._queue = queue
        self._running = running
        self._locks = locks
        self._windows = windows

    async def get_job(self, job_id: int) -> Job:
        job = await self._ctx.store.load_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    async def list_jobs(
        self, f: JobFilter | None, limit: int, cursor: int | None
    ) -> tuple[list[Job], int | None]:
        limit = max(1, min(limit, 1000))
        jobs = await self._ctx.store.list_jobs(f or JobFilter(), limit + 1, cursor)
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return jobs, (jobs[-1].id if more and jobs else None)

    async def job_log(self, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
        if job_id not in self._lineup and await self._transitions.current_state(job_id) is None:
            raise NotFound("job", job_id)
        return await self._ctx.store.job_log(job_id, after, max(1, min(limit, 10000)))

    def queue_info(self) -> dict[str, Any]:
        waiting = [
            jid for jid, rc in self._lineup.active.items() if rc.job.state == S.WAITING_FOR_LOCK
        ]
        running = self._running.running
        return {
            "capacity": self._queue.queue.capacity,
            "queued": self._queue.queue.ordered(),
            "pending": self._queue.pending,
            "running": sorted({*running, *self._windows.ids()}),
            "live_windows": len(self._windows),
            "waiting_for_lock": waiting,
            "workers": self._ctx.config.daemon.workers,
            "busy_workers": len(running),
            "accepting": self._ctx.accepting,
        }

    async def locks_info(self) -> list[dict[str, Any]]:
        """The locks' snapshot, each waiter with its ``position`` in its asset's FIFO (from
        1) and everyone with a known ``since`` with its ``age`` in seconds."""
        now = self._ctx.clock()
        items = await self._locks.snapshot()
        for item in items:
            for position, waiter in enumerate(item["waiters"], 1):
                waiter["position"] = position
            for entry in (*item["holders"], *item["waiters"]):
                since = entry.get("since")
                if since is not None:
                    entry["age"] = round(max(0.0, now - since), 3)
        return items

    async def resources_info(self) -> list[dict[str, Any]]:
        config = self._ctx.config
        now = self._ctx.clock()
        out = []
        for name, res in sorted(config.resources.items()):
            pools = sorted(p.name for p in config.pools.values() if name in p.members)
            current, upcoming = self._bookings.occupancy(name, now)
            out.append(
                {
                    "name": name,
                    "capacity": res.capacity,
                    "pools": pools,
                    "current": current,
                    "upcoming": upcoming,
                    "bookings": self._bookings.count(name),
                }
            )
        return out

    async def bookings(
        self, start: float | None, end: float | None, resources: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        reservations = self._bookings.between(start, end, resources)
        jobs = await self._ctx.store.job_windows(sorted({r.job_id for r in reservations}))
        unknown = ("?", None, None, None)
        out = []
        for r in reservations:
            name, state, start_at, end_at = jobs.get(r.job_id, unknown)
            out.append(
                {
                    "job_id": r.job_id,
                    "job_name": name,
                    "state": str(state),
                    "resource": r.resource,
                    "pool": r.pool,
                    "start": r.start,
                    "end": r.end,
                    "start_at": start_at,
                    "end_at": end_at,
                }
            )
        return out
