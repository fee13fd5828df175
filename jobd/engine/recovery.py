"""Recovery at start-up, and the bookings check at start-up and reload.

The store is the truth: the run queue, lock tables, pending count and booking
index are rebuilt from it. A job that was running when the daemon died has
what is left of its processes killed and goes back to ``confirmed`` (its
interrupted step queued again, when it has attempts left) holding its assets
again before any waiter; a ``cancel-requested`` one becomes ``canceled``.
"""

from __future__ import annotations

from dataclasses import replace

import anyio
import structlog

from jobd.core.errors import InvalidTransition
from jobd.core.models import ErrorOverlay, Job, OverlayCode
from jobd.core.states import ACTIVE, JobState, StepState
from jobd.engine.context import Context
from jobd.engine.lineup import Lineup
from jobd.engine.live import in_live_window
from jobd.engine.ports import Ids, Relock, Reopen, Requeue, Wakeup
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex

S = JobState
log = structlog.get_logger("jobd.engine")
INTERRUPTED = "interrupted by a daemon restart"


class Recovery:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        bookings: BookingIndex,
        requeue: Requeue,
        relock: Relock,
        ids: Ids,
        wakeup: Wakeup,
        live: Reopen,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._bookings = bookings
        self._requeue = requeue
        self._relock = relock
        self._ids = ids
        self._wakeup = wakeup
        self._live = live
        self._index_loaded = anyio.Event()

    async def recover(self) -> None:
        store = self._ctx.store
        await self._ids.load_ids()
        # In the reader's thread, before anything else uses the index (workers and the API
        # start after recovery).
        await store.read_reservations(self._bookings.load_sorted)
        self._index_loaded.set()
        invalid = await self.revalidate_bookings("recovery")  # the config may have changed
        if invalid:
            log.warning("bookings the configuration no longer allows", warnings=invalid)
        self._requeue.pending = await store.count_state(S.PENDING)
        await self._relock.load()
        active = await store.jobs_in_states(ACTIVE)
        await self._take_up(active, None)
        if active:
            log.info("recovered jobs", count=len(active))

    async def adopt(self, job_ids: list[int], dead: str) -> None:
        """Take up the jobs of node ``dead`` that this node took over (they are this node's
        now): as after a restart of its own, but the processes of their steps ran on the
        other node's host (its watchdog killed them), so none is killed here."""
        jobs = [job for job in await self._ctx.store.load_jobs(job_ids) if job.state in ACTIVE]
        adopted = [job for job in jobs if job.id not in self._lineup]
        await self._relock.load_adopted([job.id for job in adopted])
        await self._take_up(adopted, dead)
        log.info("took over jobs of a lost node", node=dead, count=len(jobs))

    async def _take_up(self, active: list[Job], dead: str | None) -> None:
        """Running ones interrupted, queued ones queued, waiting ones waiting again."""
        waiting = []
        for job in active:
            if job.state in (S.RUNNING, S.CANCEL_REQUESTED):
                await self._recover_running(job, dead)
            elif job.state == S.QUEUED:
                self._requeue.enqueue(job)
            else:
                waiting.append(job)
        for job in sorted(waiting, key=lambda j: (j.updated_at, j.id)):
            self._relock.restore_waiter(self._lineup.hold(job))
        self._relock.restored()
        self._wakeup.wake_all()

    async def _recover_running(self, job: Job, dead: str | None = None) -> None:
        from jobd.plugin.processes import kill_process_group

        for step in job.steps:
            if step.pgid and dead is None:
                await kill_process_group(step.pgid, grace=self._ctx.config.daemon.kill_grace)
        if job.state == S.RUNNING and in_live_window(job):
            self._live.reopen(job)
            return
        why = "a daemon restart" if dead is None else f"the loss of node {dead}"
        if job.state == S.CANCEL_REQUESTED:
            await self._transitions.apply(
                job,
                "finished",
                S.CANCELED,
                cause=f"canceled (completed after {why})",
                actor="recovery",
                unit=self._ctx.store.changes().release(job.id),
            )
            self._bookings.remove_job(job.id)
            return
        await self._resume_interrupted(job, why)

    async def _resume_interrupted(self, job: Job, why: str) -> None:
        now = self._ctx.clock()
        overlay = ErrorOverlay(OverlayCode.INTERRUPTED, f"the run was interrupted by {why}", now)
        interrupted = f"interrupted by {why}"
        unit = self._ctx.store.changes()
        exhausted = None
        for step in job.steps:
            if step.state not in (StepState.RUNNING, StepState.SOFT_FAILED):
                continue
            if step.attempts <= step.retries:
                unit.interrupt_step(job.id, step.idx, interrupted, retry=True, at=now)
            else:
                exhausted = step
                unit.interrupt_step(
                    job.id, step.idx, f"{interrupted}; no attempts left", retry=False, at=now
                )
        if exhausted is not None:
            unit.release(job.id)
            await self._transitions.apply(
                job,
                "recover",
                S.FAILED,
                cause=f"step {exhausted.name} interrupted with no attempts left",
                actor="recovery",
                unit=unit,
                error=replace(
                    overlay,
                    message=f"step {exhausted.name} was interrupted by {why} in"
                    f" attempt {exhausted.attempts} of {exhausted.retries + 1}; none left",
                ),
            )
            self._bookings.remove_job(job.id)
            return
        await self._transitions.apply(
            job,
            "recover",
            S.CONFIRMED,
            cause=f"{interrupted}; resuming",
            actor="recovery",
            unit=unit,
            error=overlay,
            due_at=now,
        )
        await self._requeue_held(job)

    async def _requeue_held(self, job: Job) -> None:
        """It held its assets when the daemon died: it gets them back before any waiter does;
        then it is due. In a cluster another node may claim it first (it was due between the
        two writes): then it is let go, with its locks."""
        self._relock.restore_holder(job)
        try:
            await self._requeue.make_due(job)
        except InvalidTransition:
            self._relock.leave(job.id)
            log.info("a resumed job was claimed by another node", job_id=job.id)

    async def revalidate_bookings(self, actor: str) -> list[str]:
        """Check the reservations against the config (reload, start-up): the overlay
        ``booking-invalid`` on the jobs it no longer allows, cleared on the others."""
        ctx = self._ctx
        now = ctx.clock()
        resources = ctx.config.resources
        await ctx.store.set_capacities({name: r.capacity for name, r in resources.items()})
        problems = self._bookings.reconfigure(resources, ctx.config.pools)
        affected: dict[int, str] = {}
        for job_id, problem in problems:  # one overlay per job, naming every problem
            affected[job_id] = f"{affected[job_id]}; {problem}" if job_id in affected else problem
        warnings = []
        for job_id, problem in affected.items():
            overlay = ErrorOverlay(OverlayCode.BOOKING_INVALID, problem, now)
            await ctx.store.commit(ctx.store.changes().set_error(job_id, overlay, now))
            self._transitions.overlay_event(job_id, now, problem, actor, overlay.to_dict())
            warnings.append(f"job {job_id}: {problem}")
        await self._clear_booking_overlays(set(affected), now, actor)
        return warnings

    async def refresh_reservations(self, heard: list[int] | None, in_the_way: list[int]) -> None:
        """Other nodes' bookings into the index (:meth:`Store.follow_reservations`): every
        ``heard`` job as the store has it now (None: every reservation, the index loaded
        again); of ``in_the_way``, the jobs the index did not know (one it knows is this
        node's own, kept up to date here). Waits for the index to be loaded (news may come
        during recovery: it is applied after)."""
        await self._index_loaded.wait()
        index = self._bookings
        if heard is None:
            # Bookings of this node in flight drop out until their commit; the database
            # still refuses a clash with them, and its refusal names them (in_the_way).
            await self._ctx.store.read_reservations(index.load_sorted)
            heard = []
        ids = heard + [j for j in in_the_way if not index.for_job(j)]
        found = {job.id: job for job in await self._ctx.store.load_jobs(ids)}
        for job_id in ids:
            index.remove_job(job_id)
            job = found.get(job_id)
            if job is not None:
                index.add(job.reservations)

    async def _clear_booking_overlays(self, still_bad: set[int], now: float, actor: str) -> None:
        store = self._ctx.store
        for job_id in await store.jobs_with_error(OverlayCode.BOOKING_INVALID):
            if job_id in still_bad:
                continue
            await store.commit(store.changes().set_error(job_id, None, now))
            self._transitions.overlay_event(job_id, now, "booking valid again", actor, None)
