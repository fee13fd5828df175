"""The lock hand-off of one node: per-asset FIFO locks in memory (:mod:`jobd.engine.locks`) between
a job's pick and the end of its run; one of the two :class:`~.ports.Handoff` (the other, a
cluster's, is :mod:`.cluster_handoff`).

**Invariants** (kept by this class alone):

1. A grant is acted on once, and never before the job's ``waiting-for-lock``
   state has committed. A waiter whose write has landed is in ``_committed``;
   when a release grants it the assets (:meth:`dispatch`), it moves to
   ``_granted`` and one idle worker is woken to run it (``lock-granted``). A
   waiter whose write is still landing is left alone: :meth:`wait_for_lock`
   sees ``locks.holds()`` once its write is in and queues the grant itself.
2. Assets are released when the run is over (steps, window and end script
   done), *before* its outcome is committed: nothing touches them after the end
   script, so the next waiter may start while that commit lands. A handed-on
   job's ``running`` write is urgent (every waiter for those assets waits on it).
3. Whoever takes a job out of the line (cancel, pause, delete, lock timeout,
   a failed pick) releases what it held or waited for (:meth:`leave`), so a
   release always hands the assets to the next waiter.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

from jobd.core.models import ErrorOverlay, Job, OverlayCode
from jobd.core.states import JobState
from jobd.engine.context import Context
from jobd.engine.lineup import Lineup
from jobd.engine.locks import LockManager
from jobd.engine.ports import Wakeup
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex
from jobd.run.runner import RunControl
from jobd.store.contract import LockStart

S = JobState


def lock_timeout_overlay(job: Job, limit: float, now: float) -> ErrorOverlay:
    """The error overlay of a job that waited longer than its ``lock_timeout``."""
    assets = ", ".join((*job.spec.assets, *job.spec.shared_assets))
    return ErrorOverlay(
        OverlayCode.LOCK_TIMEOUT, f"waited more than {limit:g} s for assets {assets}", now
    )


async def fail_for_lock_timeout(
    ctx: Context,
    transitions: Transitions,
    bookings: BookingIndex,
    lineup: Lineup,
    job: Job,
    limit: float,
) -> None:
    """``job`` waited longer than ``limit`` s for its assets (already out of the lock
    queue): ``failed`` with the ``lock-timeout`` overlay, its reservations released, and
    it leaves the lineup whatever the write did. Both hand-offs (in memory, in a cluster's
    database) end a wait this one way."""
    overlay = lock_timeout_overlay(job, limit, ctx.clock())
    try:
        await transitions.apply(
            job,
            "lock-timeout",
            JobState.FAILED,
            cause="lock timeout",
            actor="scheduler",
            error=overlay,
            unit=ctx.store.changes().release(job.id),
        )
    finally:
        bookings.remove_job(job.id)
        lineup.settle(job.id)


class LockHandoff:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        bookings: BookingIndex,
        wakeup: Wakeup,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._bookings = bookings
        self._wakeup = wakeup
        self.locks = LockManager()
        #: Jobs granted their assets and waiting for a worker to run them, in grant order:
        #: workers take from it (before the run queue), nothing else does.
        self.granted: deque[int] = deque()
        #: Waiters whose ``waiting-for-lock`` write has committed.
        self._committed: set[int] = set()

    def acquire(self, job: Job) -> bool:
        """Take the job's assets now if they are free (or it holds them already). A job
        without assets makes no request at all: it has nothing to hold or hand on, and its
        release finds nothing."""
        spec = job.spec
        if not spec.assets and not spec.shared_assets:
            return True
        return self.locks.holds(job.id) or self.locks.acquire(
            job.id, spec.assets, spec.shared_assets, now=self._ctx.clock()
        )

    def picked(self, job_id: int) -> LockStart | None:
        """A granted job was taken by a worker (a grant in memory never writes a start)."""
        self._committed.discard(job_id)
        return None

    async def wait_for_lock(self, rc: RunControl, start: LockStart | None = None) -> None:
        """Record ``waiting-for-lock``; then the grant (if it came meanwhile) or the wait.
        ``start`` is not needed: the grant's worker writes ``running`` (one commit)."""
        job = rc.job
        held = ", ".join((*job.spec.assets, *job.spec.shared_assets))
        await self._transitions.apply(
            job,
            "picked",
            S.WAITING_FOR_LOCK,
            cause=f"waiting for assets: {held}",
            actor="scheduler",
        )
        if self.locks.holds(job.id):  # granted while the write was landing
            self.granted.append(job.id)
            self._wakeup.wake_one()
            return
        self._committed.add(job.id)
        if job.spec.lock_timeout:
            self._ctx.spawn(self._lock_timer, rc, job.spec.lock_timeout)

    async def load(self) -> None:
        """Nothing to read: locks in memory start empty (SPEC §3.4: no stale lock)."""

    async def load_adopted(self, job_ids: list[int]) -> None:
        """Nothing to read: one node (SQLite) never takes over another's jobs."""

    def restored(self) -> None:
        """Nothing to let go: only what was restored is held."""

    def drained(self) -> None:
        """Nothing to put back: locks in memory end with the process."""

    async def snapshot(self) -> list[dict[str, Any]]:
        return self.locks.snapshot()

    def restore_waiter(self, rc: RunControl) -> None:
        """Recovery: a job that was waiting for a lock when the daemon stopped (in order)."""
        job = rc.job
        if self.locks.acquire(
            job.id, job.spec.assets, job.spec.shared_assets, now=self._ctx.clock()
        ):
            self.granted.append(job.id)
            return
        self._committed.add(job.id)
        if job.spec.lock_timeout:
            self._ctx.spawn(self._lock_timer, rc, job.spec.lock_timeout)

    def restore_holder(self, job: Job) -> None:
        """Recovery: a job that held its assets when the daemon died gets them back first."""
        self.locks.acquire(job.id, job.spec.assets, job.spec.shared_assets, now=self._ctx.clock())

    async def _lock_timer(self, rc: RunControl, limit: float) -> None:
        timeout = limit
        await anyio.sleep(timeout)
        job = rc.job
        if not self.locks.is_waiting(job.id) or job.state != S.WAITING_FOR_LOCK:
            return
        self.dispatch(self.locks.release(job.id))
        self._committed.discard(job.id)
        await fail_for_lock_timeout(
            self._ctx, self._transitions, self._bookings, self._lineup, job, timeout
        )

    def dispatch(self, owners: list[int]) -> None:
        """Hand newly granted assets to their waiters (invariant 1)."""
        for owner in owners:
            if owner in self._committed:
                self._committed.discard(owner)
                self.granted.append(owner)
                self._wakeup.wake_one()
            # else: its waiting-for-lock write is still landing; wait_for_lock sees holds()

    def release(self, job_id: int) -> None:
        granted = self.locks.release(job_id)  # nothing, for a job that made no request
        if granted:
            self.dispatch(granted)

    def release_if_involved(self, job_id: int) -> None:
        """Release what the job holds or waits for, if anything."""
        if self.locks.holds(job_id) or self.locks.is_waiting(job_id):
            self.dispatch(self.locks.release(job_id))

    def leave(self, job_id: int) -> None:
        if job_id in self.granted:
            self.granted.remove(job_id)
        granted = (
            self.locks.release(job_id)
            if self.locks.is_waiting(job_id) or self.locks.holds(job_id)
            else []
        )
        self._committed.discard(job_id)
        self.dispatch(granted)
