"""The lock hand-off of a cluster's node: the asset locks are the database's (SPEC §10).

The rules are the in-memory hand-off's (:mod:`.handoff`), across every node: the store's
:class:`~jobd.store.contract.AssetLocks` keeps one FIFO per asset in the database and
grants in the very transaction that adds a waiter or drops a request; the node of each job
granted is told (LISTEN/NOTIFY), whichever node released. This class is that node's side.

**The one-commit hand-off**: each request carries its job's start (:class:`LockStart`:
the step attempt its run begins with), so the transaction that grants it, whichever
node's release it is, also writes the job's ``running`` and tells ``started``: this node
runs the step at once, with nothing to write first (one durable commit per hand-off, as
the in-memory hand-off has; before, the waiter's node wrote ``running`` after the grant's
commit: two in a row). A start is this node's to run from the moment a worker takes it
(:meth:`picked`); until then the job may still leave (a cancel, a pause, its lock
timeout), and its release is then a *withdraw*, which puts the start back in the same
transaction that drops the request.

**Invariants**:

1. A job that asks for no asset never reaches the database (a plain job costs nothing).
2. The request is written with the job's ``waiting-for-lock`` transition, in one unit: a
   job waits in the database exactly when it waits in the store. A grant is acted on once,
   and never before that write has committed: ``_asked`` are the requests this node has
   made and not taken up; a grant or start for one that is not (any more) asked is
   ignored (it left, and its release or withdraw is on its way; or it was taken already).
3. Every way out (the run's end, cancel, pause, delete, lock timeout, a failed pick)
   releases in a unit of its own queued before the job's next transition, so the next
   waiter, on any node, is granted (and started) by that release's own transaction. A job
   in ``_held`` ran or runs: its release keeps its start; one still in ``_asked`` never
   ran here: its release is a withdraw (a start not taken up is put back first).
4. At start, this node's requests in the database are kept for the jobs recovery restores
   (a waiter keeps its place; a holder its hold); the others are released (no stale lock).
5. A node that stops puts back the starts it has not taken up, keeping their grants
   (:meth:`drained`): its next start runs them as holders, writing their ``running``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import structlog

from jobd.core.models import Job
from jobd.core.states import JobState
from jobd.engine.context import Context
from jobd.engine.handoff import fail_for_lock_timeout
from jobd.engine.lineup import Lineup
from jobd.engine.ports import Wakeup
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex
from jobd.run.runner import RunControl
from jobd.store.contract import AssetLocks, LockEvent, LockStart

S = JobState
log = structlog.get_logger("jobd.engine")
#: Seconds between two fallback checks of this node's requests (a lost NOTIFY; the
#: wake-up itself never waits for this).
POLL = 5.0


class ClusterHandoff:
    """See the module docstring; the methods are :class:`~.ports.Handoff`'s."""

    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        bookings: BookingIndex,
        wakeup: Wakeup,
        locks: AssetLocks,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._bookings = bookings
        self._wakeup = wakeup
        self._locks = locks
        self.granted: deque[int] = deque()
        #: Requests made (their write queued or landed) and not taken up.
        self._asked: set[int] = set()
        #: Requests granted and taken up (or granted without a start), as far as this node
        #: was told.
        self._held: set[int] = set()
        #: Requests whose grant wrote their start, not taken by a worker yet (still asked).
        self._starts: dict[int, LockStart] = {}
        #: Waiters whose ``waiting-for-lock`` write has committed.
        self._committed: set[int] = set()
        #: This node's requests in the database at start-up (``{job: held}``).
        self._found: dict[int, bool] = {}

    # ---------------------------------------------------------------- the pick
    def acquire(self, job: Job) -> bool:
        spec = job.spec
        return (not spec.assets and not spec.shared_assets) or job.id in self._held

    def picked(self, job_id: int) -> LockStart | None:
        """A worker took the granted job: its start, when the grant wrote it (it is this
        node's to run from now on: invariant 3)."""
        self._committed.discard(job_id)
        start = self._starts.pop(job_id, None)
        if start is not None:
            self._asked.discard(job_id)
            self._held.add(job_id)
        return start

    async def wait_for_lock(self, rc: RunControl, start: LockStart | None = None) -> None:
        """Queue ``waiting-for-lock`` with the request (carrying ``start``) and return: the
        worker is free at once (a waiting job holds no worker, nor the wait for its write).
        When the write lands, the grant (if it came meanwhile) or the wait; if it fails, the
        job is let go as a failed pick is."""
        job, store = rc.job, self._ctx.store
        spec = job.spec
        unit = self._locks.request(
            store.changes(), job.id, spec.assets, spec.shared_assets, self._ctx.clock(), start
        )
        self._asked.add(job.id)

        def landed(exc: BaseException | None) -> None:
            if exc is None:
                self._waiting(rc)
                return
            self._asked.discard(job.id)  # nothing of the unit landed
            log.info("job left the line before it ran", job_id=job.id, reason=str(exc))
            self.release_if_involved(job.id)

        try:
            self._transitions.apply_soon(
                job,
                "picked",
                S.WAITING_FOR_LOCK,
                landed,
                cause=f"waiting for assets: {', '.join((*spec.assets, *spec.shared_assets))}",
                actor="scheduler",
                unit=unit,
            )
        except BaseException:
            self._asked.discard(job.id)  # refused before anything was queued
            raise

    def _waiting(self, rc: RunControl) -> None:
        """The job's ``waiting-for-lock`` is in the store: hand it on now if granted, else
        wait for the grant (and its lock timeout)."""
        job = rc.job
        if job.id in self._held or job.id in self._starts:
            self.granted.append(job.id)
            self._wakeup.wake_one()
            return
        self._committed.add(job.id)
        if job.spec.lock_timeout:
            self._ctx.spawn(self._lock_timer, rc, job.spec.lock_timeout)

    async def _lock_timer(self, rc: RunControl, limit: float) -> None:
        await anyio.sleep(limit)
        job = rc.job
        if job.id not in self._asked or job.id not in self._committed:
            return  # granted meanwhile, or gone
        if job.state != S.WAITING_FOR_LOCK:
            return
        self.leave(job.id)  # its own unit, before the transition (invariant 3)
        await fail_for_lock_timeout(
            self._ctx, self._transitions, self._bookings, self._lineup, job, limit
        )

    # ---------------------------------------------------------------- the database's word
    def _report(self, event: LockEvent) -> None:
        kind, job_id = event[0], event[1]
        if len(event) == 3:
            self._start(job_id, event[2])
        elif kind == "granted":
            self._grant(job_id)
        elif kind == "recheck" and job_id in self._asked:
            self._ctx.store.commit_nowait(self._locks.regrant(self._ctx.store.changes(), job_id))
        elif kind == "poll":
            self._ctx.spawn(self._poll, False)
        elif kind == "resync":
            self._ctx.spawn(self._poll, True)

    def _grant(self, job_id: int) -> None:
        if job_id not in self._asked:
            return  # it left (its release is on its way), or this node knows already
        self._asked.discard(job_id)
        self._held.add(job_id)
        if job_id in self._committed:
            self._committed.discard(job_id)
            self.granted.append(job_id)
            self._wakeup.wake_one()
        # else: its waiting-for-lock write is still landing; wait_for_lock sees _held

    def _start(self, job_id: int, start: LockStart) -> None:
        """A grant wrote the job's start: a worker runs it (:meth:`picked`)."""
        if job_id not in self._asked or job_id in self._starts:
            return  # it left (its withdraw puts the start back), or this node knows already
        if self._ctx.draining:  # no worker will take it: back to a plain grant (invariant 5)
            self._ctx.store.commit_nowait(self._locks.unstart(self._ctx.store.changes(), job_id))
            self._grant(job_id)
            return
        self._starts[job_id] = start
        if job_id in self._committed:
            self._committed.discard(job_id)
            self.granted.append(job_id)
            self._wakeup.wake_one()
        # else: its waiting-for-lock write is still landing; wait_for_lock sees _starts

    async def _poll(self, recheck: bool) -> None:
        """The fallback: grants and starts this node was not told of; after a lost
        connection, also a recheck of every waiter (a ``recheck`` may have been lost)."""
        try:
            mine = await self._locks.mine()
            starts = await self._locks.starts()
        except Exception as exc:  # the store says why; the next poll tries again
            log.warning("could not read this node's lock requests", error=str(exc))
            return
        store = self._ctx.store
        for job_id, held in mine.items():
            if job_id in starts:
                self._start(job_id, starts[job_id])
            elif held:
                self._grant(job_id)
            elif recheck and job_id in self._asked:
                store.commit_nowait(self._locks.regrant(store.changes(), job_id))

    # ---------------------------------------------------------------- ways out
    def release(self, job_id: int) -> None:
        store = self._ctx.store
        if job_id in self._held:
            self._held.discard(job_id)
            store.commit_nowait(self._locks.release(store.changes(), job_id))
        elif job_id in self._asked:  # it never ran here: a start not taken up goes back
            self._asked.discard(job_id)
            self._starts.pop(job_id, None)
            store.commit_nowait(self._locks.withdraw(store.changes(), job_id))

    def release_if_involved(self, job_id: int) -> None:
        self.release(job_id)

    def leave(self, job_id: int) -> None:
        if job_id in self.granted:
            self.granted.remove(job_id)
        self._committed.discard(job_id)
        self.release(job_id)

    # ---------------------------------------------------------------- recovery
    async def load(self) -> None:
        """This node's requests as the database has them; then listen for grants."""
        tg = self._ctx.tg
        if tg is not None:  # listening before this node asks for anything
            await tg.start(self._locks.listen, self._report, POLL)
        self._found = await self._locks.mine()

    async def load_adopted(self, job_ids: list[int]) -> None:
        """The takeover made these jobs' requests this node's: the waiting ones moved here
        in place, and a release may have granted (and started) one since, as this node's.
        Read now, a holder is restored as a holder (it runs first, writing its own
        ``running``: a start written for the run the takeover interrupted is stale), a
        waiter keeps its place, and what no job is restored to is let go (``restored``).
        Left unread, a granted request was asked for again, and the database's answer to a
        second request of a job it had started was that start, stale: the job ran with its
        ``running`` undone, its outcome refused, and it stayed ``waiting-for-lock``."""
        wanted = set(job_ids)
        mine = await self._locks.mine()
        self._found.update({job: held for job, held in mine.items() if job in wanted})

    def restore_holder(self, job: Job) -> None:
        """It held its assets when the daemon died: still its own in the database (a hold
        is never taken from a live node), unless a takeover gave them on; then its pick
        asks again, at the end of the queue."""
        if self._found.pop(job.id, False):
            self._held.add(job.id)

    def restore_waiter(self, rc: RunControl) -> None:
        job, store = rc.job, self._ctx.store
        found = self._found.pop(job.id, None)
        if found is None:  # no request (it was taken over): ask again, at the end
            spec = job.spec
            unit = self._locks.request(
                store.changes(), job.id, spec.assets, spec.shared_assets, self._ctx.clock()
            )
            store.commit_nowait(unit)
        if found:
            self._held.add(job.id)
        else:
            self._asked.add(job.id)
        self._waiting(rc)

    def drained(self) -> None:
        """The node stops: the starts no worker took go back to plain grants (invariant
        5), queued before the store's last flush."""
        store = self._ctx.store
        for job_id in list(self._starts):
            del self._starts[job_id]
            store.commit_nowait(self._locks.unstart(store.changes(), job_id))
            self._asked.discard(job_id)
            self._held.add(job_id)

    def restored(self) -> None:
        store = self._ctx.store
        for job_id in self._found:
            log.info("releasing a lock no job was restored to", job_id=job_id)
            store.commit_nowait(self._locks.release(store.changes(), job_id))
        self._found = {}

    async def snapshot(self) -> list[dict[str, Any]]:
        return await self._locks.snapshot()
