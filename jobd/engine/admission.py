"""Admission: the due timer, ``pending`` and the run queue.

One timer (``Timers.wake_due_at``) is set for the earliest due time the store
knows; :meth:`Admission.process_due` moves what is due to ``queued`` (room in
the queue) or ``pending`` (queue full), and :meth:`Admission.admit` fills free
places from ``pending``, priority first, then due time.

**Enqueue before commit** (kept here and in ``Intake.place``): three paths put a
job in the run queue and wake a worker *before* the write that makes it
``queued`` has committed: a submission due at once, a due job, an admitted job.
A worker may pick it at once; its ``running`` unit goes to the store after the
``queued`` one, and the store applies units in order, so the run starts one
commit sooner and its guard sees ``queued``. If the ``queued`` write fails,
the path takes the job back out (:meth:`unqueue`) and re-raises; a worker that
picked it meanwhile fails its guarded ``running`` write and lets it go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from jobd.core.errors import JobdError
from jobd.core.models import ErrorOverlay, Job, OverlayCode
from jobd.core.states import JobState
from jobd.engine.context import Context
from jobd.engine.lineup import Lineup
from jobd.engine.ports import Wakeup
from jobd.engine.requires import not_here
from jobd.engine.runqueue import RunQueue
from jobd.engine.transitions import Transitions
from jobd.plan.timers import Timers

S = JobState
log = structlog.get_logger("jobd.engine")
#: Due jobs moved per read (SQLite caps the ``?`` in one ``IN (...)``).
DUE_BATCH = 500


class Admission:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        timers: Timers,
        wakeup: Wakeup,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._timers = timers
        self._wakeup = wakeup
        self.queue = RunQueue(ctx.config.daemon.run_queue_size)
        #: Jobs in ``pending`` (the store's count, kept here).
        self.pending = 0
        # asyncio.Lock: anyio's yields to the loop even when free, which put a due job behind
        # a whole turn of other work.
        self._due_lock = asyncio.Lock()
        #: Due jobs whose move to queued or pending is being written (see process_due),
        #: and an event set when there are none.
        self._moving: set[int] = set()
        self._moves_landed = asyncio.Event()
        self._moves_landed.set()
        self._admitting = False
        #: Pending jobs this node may not run (``requires``), as last seen.
        self.foreign: set[int] = set()
        #: An admit() task is started and has not run yet (see admit_soon).
        self._admit_started = False
        #: When the one due timer is set for (None: not set).
        self._next_wake: float | None = None

    # ---------------------------------------------------------------- Placement
    def has_room(self) -> bool:
        # Pending jobs this node may not run (their workflow's ``requires``) do not wait
        # for its queue: they are no reason to keep a new job out of it.
        return self.pending <= len(self.foreign) and not self.queue.full()

    def not_here(self, job: Job) -> str | None:
        """Why this node may not run ``job`` (:mod:`.requires`); None when it may."""
        reason = not_here(self._ctx.config, job)
        if reason is not None:
            self.foreign.add(job.id)
        return reason

    def enqueue(self, job: Job) -> None:
        self._lineup.hold(job)
        self.queue.push(job.id, job.spec.priority, job.due_at or 0.0, force=True)

    def unqueue(self, job_id: int) -> None:
        self.queue.remove(job_id)
        self._lineup.drop(job_id)

    def add_pending(self, job: Job | None = None) -> None:
        """One more job in ``pending``; ``job``: as this node just committed it there, kept
        (:mod:`.parked`) for its admission unless it books or carries an overlay (those
        may change beside the transitions: a reload re-checks bookings)."""
        self.pending += 1
        if job is not None and not job.reservations and job.error is None:
            self._transitions.parked.park(job)

    def leave_pending(self) -> None:
        self.pending = max(0, self.pending - 1)

    def schedule_due(self, due_at: float | None) -> None:
        ctx = self._ctx
        if due_at is None or not ctx.accepting:
            return
        if due_at <= ctx.clock():
            ctx.spawn(self.process_due)
            return
        current = self._next_wake
        if current is None or due_at < current:
            self._next_wake = due_at
            self._timers.wake_due_at(due_at, self.process_due)

    def stop_timer(self) -> None:
        """Draining: the due timer rings no more."""
        self._timers.wake_due_at(None, self.process_due)

    # ---------------------------------------------------------------- Line
    def next_queued(self) -> int | None:
        job_id = self.queue.pop()
        if job_id is not None:
            self.admit_soon()
        return job_id

    def admit_soon(self) -> None:
        """Start :meth:`admit` in a task, unless one is started or admitting already: its
        loop sees the places freed meanwhile. (A task for every place freed while jobs
        were pending, each returning at once, was a seventh of the workers' time.)"""
        idle = not (self._admit_started or self._admitting)
        if self.pending and idle and self._ctx.tg is not None:
            self._admit_started = True
            self._ctx.spawn(self._admit_task)

    async def _admit_task(self) -> None:
        self._admit_started = False
        await self.admit()

    # ---------------------------------------------------------------- due
    async def process_due(self) -> None:
        """Move every confirmed job whose time has come into the queue (or pending)."""
        ctx = self._ctx
        if not ctx.accepting:
            return
        async with self._due_lock:
            while True:
                now = ctx.clock()
                plan = await ctx.store.load_due(now, DUE_BATCH)
                jobs = [
                    job
                    for job in plan.due
                    if job.state == S.CONFIRMED
                    and job.id not in self._lineup
                    and job.id not in self._moving
                ]
                if len(plan.due) < DUE_BATCH:  # that was all, as of now
                    break
                # A backlog: move this part before reading the next (it reads the same rows
                # until these writes land). All at once: their writes share one commit.
                if jobs:
                    await each(self.make_due, jobs)
                elif self._moving:  # all of them are being moved already: let that land
                    await self._moves_landed.wait()
                else:  # all in other hands (an operation on each is landing): look again
                    plan.next_wake = now + 0.05  # soon, for the due ones not read yet
                    break
            if jobs and ctx.tg is not None:
                # The usual case, a few jobs: the timer goes on to the next due time while
                # their writes land. Each decides queue or pending before its first await.
                self._moving.update(job.id for job in jobs)
                ctx.tg.start_soon(self._move_due, jobs)
            self._next_wake = plan.next_wake
            self._timers.wake_due_at(self._next_wake, self.process_due)
            await self._mark_unconfirmed(plan.unconfirmed_started, now)

    async def _move_due(self, jobs: list[Job]) -> None:
        self._moves_landed.clear()
        try:
            await each(self.make_due, jobs)
        except Exception:
            log.exception("moving due jobs failed", jobs=[job.id for job in jobs])
        finally:
            self._moving.difference_update(job.id for job in jobs)
            if not self._moving:
                self._moves_landed.set()

    async def make_due(self, job: Job) -> None:
        """A confirmed job's time came: queued (enqueued before the commit), or pending
        (the queue is full, or this node may not run it: the cause says why)."""
        reason = self.not_here(job)
        if reason is not None:
            await self._transitions.apply(job, "due", S.PENDING, cause=reason, actor="scheduler")
            self.pending += 1
        elif self.has_room():
            self.enqueue(job)
            self._wakeup.wake_one()  # a worker's `running` write may follow this one
            try:
                await self._transitions.apply(job, "due", S.QUEUED, cause="due", actor="scheduler")
            except BaseException:
                self.unqueue(job.id)
                raise
        else:
            await self._transitions.apply(
                job, "due", S.PENDING, cause="due; run queue full", actor="scheduler"
            )
            self.pending += 1

    async def _mark_unconfirmed(self, started: list[int], now: float) -> None:
        store = self._ctx.store
        for job_id in started:
            overlay = ErrorOverlay(
                OverlayCode.NOT_CONFIRMED,
                "the start time passed while the job was not confirmed; it will not run",
                now,
            )
            await store.commit(store.changes().set_error(job_id, overlay, now, only_if_clear=True))
            self._transitions.overlay_event(
                job_id, now, "not-confirmed", "scheduler", overlay.to_dict()
            )

    async def cluster_news(self) -> None:
        """Another node of a cluster made work claimable (or a poll): its due times and its
        ``pending`` jobs are this node's to claim too, when it has room."""
        self.pending = await self._ctx.store.count_state(S.PENDING)
        await self.process_due()
        await self.admit()

    # ---------------------------------------------------------------- pending
    async def admit(self) -> None:
        """Fill free queue places from ``pending``: priority first, then due time."""
        if self.pending == 0 or self.queue.full() or self._admitting or not self._ctx.accepting:
            return
        self._admitting = True
        try:
            await self._admit_pending()
        finally:
            self._admitting = False

    async def _admit_pending(self) -> None:
        """Read ``pending`` from its head; jobs this node may not run stay (and the next read
        reaches past them: they stay at the head)."""
        store = self._ctx.store
        last = 0
        while self.pending > 0 and not self.queue.full():
            limit = self.queue.free + len(self.foreign)
            if limit <= last:
                break  # the last read reached no further than this one would
            ids = await store.pending_jobs(limit)
            if not ids:
                self.pending, self.foreign = 0, set()
                break
            jobs = [
                job
                for job in await self._pending_jobs(ids)
                if job.state == S.PENDING and job.id not in self._lineup
            ]
            self.foreign = {job.id for job in jobs if not_here(self._ctx.config, job)}
            mine = [job for job in jobs if job.id not in self.foreign]
            if len(ids) < limit:
                if mine:
                    await self._admit_all(mine)
                break  # that was all of pending
            if mine:
                await self._admit_all(mine)
                last = 0  # room was used: read the head again
            else:
                last = limit  # only jobs for other nodes: reach past them

    async def _pending_jobs(self, ids: list[int]) -> list[Job]:
        """The jobs of ``ids`` in that order: those parked as placed (:mod:`.parked`), the
        others read from the store."""
        take = self._transitions.parked.take
        found = {i: job for i in ids if (job := take(i)) is not None}
        missing = [i for i in ids if i not in found]
        if missing:
            found.update((job.id, job) for job in await self._ctx.store.load_jobs(missing))
        return [found[i] for i in ids if i in found]

    async def _admit_all(self, jobs: list[Job]) -> None:
        """Queue pending jobs: each is enqueued, and a worker woken, before the write (a
        worker's `running` write may follow it); the write is ONE set-based transition for
        all (:meth:`Transitions.apply_many`), not a task and a unit per job. A job that
        changed meanwhile is taken back out and logged."""
        for job in jobs:
            self.enqueue(job)
            self._wakeup.wake_one()
        try:
            outcome = await self._transitions.apply_many(
                jobs, "admitted", S.QUEUED, cause="admitted", actor="scheduler"
            )
        except BaseException:
            for job in jobs:
                if job.state == S.PENDING:  # put back (cancelled, or an unexpected error)
                    self.unqueue(job.id)
            raise
        self.pending = max(0, self.pending - len(outcome.moved))
        for job in outcome.changed:
            self.unqueue(job.id)
            log.info("job changed while being moved", job_id=job.id, reason="not pending")
        for job, exc in outcome.failed:
            self.unqueue(job.id)
            log.info("job changed while being moved", job_id=job.id, reason=str(exc))


async def each(operation: Callable[[Job], Awaitable[None]], jobs: list[Job]) -> None:
    """Run ``operation`` on every job concurrently (their commits share a batch); a job
    that changed meanwhile is logged and skipped, not fatal to the others."""
    results = await asyncio.gather(*(operation(job) for job in jobs), return_exceptions=True)
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, JobdError):
            log.info("job changed while being moved", job_id=job.id, reason=str(result))
        elif isinstance(result, BaseException):
            raise result
