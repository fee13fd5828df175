"""The lock hand-off of a cluster's node: the asset locks are the database's (SPEC §10).

The rules are the in-memory hand-off's (:mod:`.handoff`), across every node: the store's
:class:`~jobd.store.contract.AssetLocks` keeps one FIFO per asset in the database and
grants in the very transaction that adds a waiter or drops a request; the node of each job
granted is told (LISTEN/NOTIFY), whichever node released. This class is that node's side.

**Invariants**:

1. A job that asks for no asset never reaches the database (a plain job costs nothing).
2. The request is written with the job's ``waiting-for-lock`` transition, in one unit: a
   job waits in the database exactly when it waits in the store. A grant is acted on once,
   and never before that write has committed: ``_asked`` are the requests this node has
   made and not seen granted; a grant for one that is not (any more) asked is ignored (it
   left, and its release is on its way; or it was granted already).
3. Every way out (the run's end, cancel, pause, delete, lock timeout, a failed pick)
   releases in a unit of its own queued before the job's next transition, so the next
   waiter, on any node, is granted by that release's own transaction.
4. At start, this node's requests in the database are kept for the jobs recovery restores
   (a waiter keeps its place; a holder its hold); the others are released (no stale lock).
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
from jobd.store.contract import AssetLocks, LockEvent

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
        #: Requests made (their write queued or landed) and not seen granted.
        self._asked: set[int] = set()
        #: Requests granted, as far as this node was told.
        self._held: set[int] = set()
        #: Waiters whose ``waiting-for-lock`` write has committed.
        self._committed: set[int] = set()
        #: This node's requests in the database at start-up (``{job: held}``).
        self._found: dict[int, bool] = {}

    # ---------------------------------------------------------------- the pick
    def acquire(self, job: Job) -> bool:
        spec = job.spec
        return (not spec.assets and not spec.shared_assets) or job.id in self._held

    def picked(self, job_id: int) -> None:
        self._committed.discard(job_id)

    async def wait_for_lock(self, rc: RunControl) -> None:
        """Write ``waiting-for-lock`` with the request; then the grant (if it came while the
        write was landing) or the wait."""
        job, store = rc.job, self._ctx.store
        spec = job.spec
        unit = self._locks.request(
            store.changes(), job.id, spec.assets, spec.shared_assets, self._ctx.clock()
        )
        self._asked.add(job.id)
        try:
            await self._transitions.apply(
                job,
                "picked",
                S.WAITING_FOR_LOCK,
                cause=f"waiting for assets: {', '.join((*spec.assets, *spec.shared_assets))}",
                actor="scheduler",
                unit=unit,
            )
        except BaseException:
            self._asked.discard(job.id)  # nothing of the unit landed
            raise
        self._waiting(rc)

    def _waiting(self, rc: RunControl) -> None:
        """The job's ``waiting-for-lock`` is in the store: hand it on now if granted, else
        wait for the grant (and its lock timeout)."""
        job = rc.job
        if job.id in self._held:
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
        kind, job_id = event
        if kind == "granted":
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

    async def _poll(self, recheck: bool) -> None:
        """The fallback: grants this node was not told of; after a lost connection, also a
        recheck of every waiter (a ``recheck`` may have been lost with it)."""
        try:
            mine = await self._locks.mine()
        except Exception as exc:  # the store says why; the next poll tries again
            log.warning("could not read this node's lock requests", error=str(exc))
            return
        store = self._ctx.store
        for job_id, held in mine.items():
            if held:
                self._grant(job_id)
            elif recheck and job_id in self._asked:
                store.commit_nowait(self._locks.regrant(store.changes(), job_id))

    # ---------------------------------------------------------------- ways out
    def release(self, job_id: int) -> None:
        if job_id in self._held or job_id in self._asked:
            self._held.discard(job_id)
            self._asked.discard(job_id)
            store = self._ctx.store
            store.commit_nowait(self._locks.release(store.changes(), job_id))

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

    def restored(self) -> None:
        store = self._ctx.store
        for job_id in self._found:
            log.info("releasing a lock no job was restored to", job_id=job_id)
            store.commit_nowait(self._locks.release(store.changes(), job_id))
        self._found = {}

    async def snapshot(self) -> list[dict[str, Any]]:
        return await self._locks.snapshot()
