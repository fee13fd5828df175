"""The one path by which a job's state changes.

:meth:`Transitions.apply` checks the transition table, adds the guarded
transition and its history row to the caller's unit, waits for the COMMIT, and
only then tells the rest (:class:`~.fanout.Fanout`); :meth:`Transitions.apply_many`
is its set-based twin for many jobs going the same way (a batch operation). The job
object is claimed (its ``state`` set) before the write, so a concurrent operation sees
the new state; it is put back if the write fails. Callers that tell the queue *before*
the commit (see :mod:`.admission`) undo that themselves when it raises.
:meth:`Transitions.apply_soon` is the same path with no task waiting for the COMMIT:
what follows it runs in a callback (a job's outcome, the hottest write of all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobd.core.errors import InvalidTransition, JobdError
from jobd.core.events import JobEvent
from jobd.core.models import ErrorOverlay, Job, Step
from jobd.core.states import JobState, allowed_operations, check_transition
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.engine.parked import Parked
from jobd.store import KEEP, Changes, GuardFailed


@dataclass(slots=True)
class Moved:
    """What :meth:`Transitions.apply_many` did, per job."""

    #: Written and told: each job with the state it left.
    moved: list[tuple[Job, JobState]] = field(default_factory=list)
    #: Found in another state when written (they changed meanwhile): put back as they were.
    changed: list[Job] = field(default_factory=list)
    #: The store could not take them (put back), with its error.
    failed: list[tuple[Job, JobdError]] = field(default_factory=list)
    #: Errors that are not the store's (a bug): raised once the rest is told.
    unexpected: list[BaseException] = field(default_factory=list)

    def add(self, group: list[Job], frm: JobState, answer: list[int] | BaseException) -> None:
        """One from-state's jobs and what the store answered for them."""
        if isinstance(answer, BaseException):
            for job in group:
                job.state = frm
            if isinstance(answer, JobdError):
                self.failed += ((job, answer) for job in group)
            else:
                self.unexpected.append(answer)
            return
        done = set(answer)
        for job in group:
            if job.id in done:
                self.moved.append((job, frm))
            else:
                job.state = frm
                self.changed.append(job)


class Transitions:
    def __init__(self, ctx: Context, fanout: Fanout, parked: Parked | None = None) -> None:
        self._ctx = ctx
        self._fanout = fanout
        #: Pending jobs kept as placed (:mod:`.parked`; none unless given): a job changing
        #: here leaves it.
        self.parked = Parked() if parked is None else parked
        self._forget = self.parked.forget

    async def apply(
        self,
        job: Job,
        operation: str,
        target: JobState,
        *,
        cause: str,
        actor: str,
        unit: Changes | None = None,
        error: ErrorOverlay | None = KEEP,
        due_at: float | None = KEEP,
        steps: list[Step] | None = None,
        urgent: bool = False,
    ) -> None:
        """Check, write (guarded), commit, then tell everyone. The job object is updated.

        ``unit`` carries what must land with the transition; ``steps`` were written in it
        and their events go out before the job's. ``urgent``: see ``Store.commit``.
        Raises InvalidTransition (the table, or the guard: the job changed meanwhile)."""
        previous, now, u = self._claim(job, operation, target, unit, cause, actor, error, due_at)
        try:
            await self._ctx.store.commit(u, urgent=urgent)
        except GuardFailed:
            job.state = previous
            current = await self.current_state(job.id)
            raise InvalidTransition(
                operation,
                current or previous,
                allowed_operations(current or previous),
                job_id=job.id,
            ) from None
        except BaseException:
            job.state = previous
            raise
        self._told(job, previous, target, now, cause, actor, error, due_at, steps)

    def apply_soon(
        self,
        job: Job,
        operation: str,
        target: JobState,
        then: Callable[[BaseException | None], None],
        *,
        cause: str,
        actor: str,
        unit: Changes | None = None,
        error: ErrorOverlay | None = KEEP,
        steps: list[Step] | None = None,
    ) -> None:
        """:meth:`apply` with no task waiting for the commit (``Store.commit_soon``): once it
        lands, everyone is told and ``then(None)`` is called; if it fails, the job's state is
        put back and ``then(exc)`` is called, a failed guard as InvalidTransition naming the
        state the job was claimed from (no read: the outcome path only logs it). Raises
        InvalidTransition at once if the table refuses it (nothing is written then)."""
        previous, now, u = self._claim(job, operation, target, unit, cause, actor, error, KEEP)

        def landed(exc: BaseException | None) -> None:
            if exc is None:
                self._told(job, previous, target, now, cause, actor, error, KEEP, steps)
            else:
                job.state = previous
                if isinstance(exc, GuardFailed):
                    allowed = allowed_operations(previous)
                    exc = InvalidTransition(operation, previous, allowed, job_id=job.id)
            then(exc)

        self._ctx.store.commit_soon(u, landed)

    def _claim(
        self,
        job: Job,
        operation: str,
        target: JobState,
        unit: Changes | None,
        cause: str,
        actor: str,
        error: ErrorOverlay | None,
        due_at: float | None,
    ) -> tuple[JobState, float, Changes]:
        """Check the table, add the guarded transition to the unit, and claim the job: its
        ``state`` is the target from now on, so that a concurrent operation sees it."""
        check_transition(operation, job.state, target)
        self._forget(job.id)
        now = self._ctx.clock()
        u = unit if unit is not None else self._ctx.store.changes()
        u.transition(job.id, job.state, target, now, cause, actor, error=error, due_at=due_at)
        previous = job.state
        job.state = target
        return previous, now, u

    def _told(
        self,
        job: Job,
        previous: JobState,
        target: JobState,
        now: float,
        cause: str,
        actor: str,
        error: ErrorOverlay | None,
        due_at: float | None,
        steps: list[Step] | None,
    ) -> None:
        """The transition committed: the job object takes it in, then everyone is told."""
        job.updated_at = now
        if error is not KEEP:
            job.error = error
        if due_at is not KEEP:
            job.due_at = due_at
        for step in steps or ():
            self._fanout.step_event(job, step, previous)
        self._fanout.emit(JobEvent(job.id, "state", now, previous, target, cause, actor), job)

    async def apply_many(
        self,
        jobs: Sequence[Job],
        operation: str,
        target: JobState,
        *,
        cause: str,
        actor: str,
        release: bool = False,
    ) -> Moved:
        """:meth:`apply` for many jobs going the same way, set-based (``Store.transition_many``
        per from-state, the groups concurrently: on SQLite they share a commit): check every
        job, claim them all, write, then tell everyone of each job moved. ``release``: their
        reservations go in the same write (the booking index is the caller's).

        Raises InvalidTransition before anything is claimed when the table refuses a job;
        every other outcome is per job (:class:`Moved`), the jobs not moved put back."""
        for job in jobs:
            check_transition(operation, job.state, target)
        groups: dict[JobState, list[Job]] = {}
        for job in jobs:
            self._forget(job.id)
            groups.setdefault(job.state, []).append(job)
            job.state = target  # claim it now, as apply does
        now, store = self._ctx.clock(), self._ctx.store
        writes = [
            store.transition_many(
                [job.id for job in group], frm, target, now, cause, actor, release=release
            )
            for frm, group in groups.items()
        ]
        try:
            answers = await _answers(writes)
        except BaseException:  # cancelled: as apply, the jobs are put back
            for frm, group in groups.items():
                for job in group:
                    job.state = frm
            raise
        outcome = Moved()
        for (frm, group), answer in zip(groups.items(), answers, strict=True):
            outcome.add(group, frm, answer)
        emit = self._fanout.emit
        for job, frm in outcome.moved:
            job.updated_at = now
            emit(JobEvent(job.id, "state", now, frm, target, cause, actor), job)
        for error in outcome.unexpected:
            raise error
        return outcome

    def applied(
        self, job: Job, operation: str, target: JobState, at: float, *, cause: str, actor: str
    ) -> None:
        """A transition another transaction wrote already (a cluster's lock grant writes
        the job's ``running``: :mod:`.cluster_handoff`): checked, the job object updated,
        and everyone told, as :meth:`apply` does after its commit."""
        check_transition(operation, job.state, target)
        self._forget(job.id)
        previous, job.state, job.updated_at = job.state, target, at
        self._fanout.emit(JobEvent(job.id, "state", at, previous, target, cause, actor), job)

    async def current_state(self, job_id: int) -> JobState | None:
        states = await self._ctx.store.job_states([job_id])
        return states[job_id][1] if job_id in states else None

    def history_only(self, job: Job, cause: str, actor: str) -> None:
        """A history row that changes nothing (stop requested, ...); not waited for."""
        store = self._ctx.store
        store.commit_nowait(
            store.changes().record_history(
                job.id, self._ctx.clock(), job.state, job.state, cause, actor
            )
        )

    def overlay_event(self, job_id: int, at: float, cause: str, actor: str, data: Any) -> None:
        """Tell everyone a job's error overlay changed (after its commit)."""
        self._forget(job_id)
        self._fanout.emit(JobEvent(job_id, "error", at, cause=cause, actor=actor, data=data))


async def _answers(writes: Sequence[Awaitable[list[int]]]) -> list[Any]:
    """Each write's answer or exception, the writes concurrent. One is awaited here, not in
    a task of gather's, so that its unit is queued before anything else runs: a worker's
    `running` write for a job enqueued before it must come after it (admission)."""
    if len(writes) == 1:
        return [await _settled(writes[0])]
    return await asyncio.gather(*writes, return_exceptions=True)


async def _settled(write: Awaitable[list[int]]) -> list[int] | BaseException:
    """``write``'s answer, or the exception it raised (as ``gather(return_exceptions=True)``
    gives them; a cancellation of the caller is raised)."""
    try:
        return await write
    except Exception as exc:
        return exc
