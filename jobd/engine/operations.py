"""Operations on one job (SPEC §2); on many (``POST /v1/batch/{operation}``): :mod:`.batch`.

Each public operation is a handler ``(job, actor)`` here; :meth:`Operations.operate`
checks the transition table first, the handler does the rest through the one
transition path. A running job is stopped through its run control (cancel,
pause, stop) and the answer waits briefly for the run to end. :data:`SET_WISE` names
the operations that are their transition alone for every job that is not running, which
a batch writes together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import anyio

from jobd.core.errors import InvalidTransition, JobdError, NotApplicable, ValidationError
from jobd.core.events import JobEvent
from jobd.core.models import Job, OverlayCode
from jobd.core.states import (
    ACTIVE,
    JobState,
    StepState,
    allowed_operations,
    check_transition,
)
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.engine.forward import MOVED, Remote
from jobd.engine.lineup import Lineup, load_live
from jobd.engine.ports import Booking, Grants, LiveOps, Placement
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex
from jobd.run.runner import CANCEL, PAUSE
from jobd.store import GuardFailed

S = JobState
#: How long cancel/pause/stop of a running job wait for it to stop before answering.
OPERATION_WAIT = 5.0
#: Times an operation follows a job that moves to another node while it is being asked.
MOVES = 3
Handler = Callable[[Job, str], Awaitable[Job | None]]


@dataclass(frozen=True, slots=True)
class SetWise:
    """An operation that takes every job it may start from (but a running one) the same way,
    with nothing to stop: a batch applies it set-based (:meth:`Transitions.apply_many`)."""

    target: JobState
    cause: str
    #: The job leaves the run queue, its lock wait or ``pending`` first.
    leaves_line: bool = False
    #: Its reservations go in the same write.
    releases: bool = False


#: The operations a batch applies set-wise to the jobs that are not running (a running
#: job's run is stopped by its own handler); the one-job handlers use the same causes.
SET_WISE = {
    "cancel": SetWise(S.CANCELED, "canceled", leaves_line=True, releases=True),
    "pause": SetWise(S.PAUSED, "paused", leaves_line=True),
    "unconfirm": SetWise(S.TENTATIVE, "unconfirmed"),
    "invoice-ready": SetWise(S.READY_FOR_INVOICE, "final figures fixed"),
    "invoiced": SetWise(S.INVOICED, "invoiced"),
}
#: States a batch leaves to the one-job handlers: a run to stop.
RUN_STATES = frozenset({S.RUNNING, S.CANCEL_REQUESTED})


class Operations:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        fanout: Fanout,
        bookings: BookingIndex,
        placement: Placement,
        grants: Grants,
        intake: Booking,
        live: LiveOps,
        remote: Remote,
    ) -> None:
        self._ctx = ctx
        self._remote = remote
        self._lineup = lineup
        self._transitions = transitions
        self._fanout = fanout
        self._bookings = bookings
        self._placement = placement
        self._grants = grants
        self._intake = intake
        self._live = live
        self._handlers: dict[str, Handler] = {
            "cancel": self._cancel,
            "stop": self._stop,
            "pause": self._pause,
            "resume": self._resume,
            "retry": self._retry,
            "restart": self._restart,
            "confirm": self._confirm,
            "tentative": self._tentative,
            "unconfirm": self._unconfirm,
            "resubmit": self._resubmit,
            "invoice-ready": self._invoice_ready,
            "invoiced": self._invoiced,
            "delete": self._delete,
        }

    # ---------------------------------------------------------------- entry points
    def handler(self, operation: str) -> Handler:
        handler = self._handlers.get(operation)
        if handler is None:
            raise ValidationError(
                f"unknown operation {operation!r} (known: {', '.join(self._handlers)})",
                field="operation",
            )
        return handler

    async def operate(
        self, job_id: int, operation: str, actor: str, *, here: bool = False
    ) -> Job | None:
        """Apply ``operation``; the job after it for ``resubmit`` (the new job), else None.
        A job another node of a cluster holds is operated on by that node (:mod:`.forward`),
        unless ``here`` (the operation was forwarded to this node)."""
        handler = self.handler(operation)
        for _ in range(MOVES):
            job = await load_live(self._lineup, self._ctx.store, job_id)
            node = None if here else await self._holder(job, operation)
            if node is None:
                break
            outcome = (await self._remote.forward(node, [job_id], operation, actor)).get(job_id)
            if outcome != MOVED:  # done there, or refused there; else ask again where it is
                if isinstance(outcome, JobdError):
                    raise outcome
                return None
        return await self._here(job, operation, handler, actor)

    async def _here(self, job: Job, operation: str, handler: Handler, actor: str) -> Job | None:
        """Apply ``operation`` on this node. A job that changed between the read and the
        guarded write (on a cluster, this node's recovery of a job it has just taken over
        makes its ``running`` ``queued``) is read again and the operation decided on it as
        it is now, when its new state allows it; a refusal then names a state that refuses."""
        for _ in range(MOVES):
            seen = job.state
            check_transition(operation, seen)
            try:
                return await handler(job, actor)
            except InvalidTransition as exc:
                if exc.state == seen or operation not in exc.allowed:
                    raise
            job = await load_live(self._lineup, self._ctx.store, job.id)
        check_transition(operation, job.state)
        return await handler(job, actor)

    async def _holder(self, job: Job, operation: str) -> str | None:
        """The other node that holds ``job``, when the operation must be done there."""
        if operation == "resubmit" or job.state not in ACTIVE or job.id in self._lineup:
            return None
        return (await self._remote.holders([job.id])).get(job.id)

    # ---------------------------------------------------------------- stopping
    async def _cancel(self, job: Job, actor: str) -> None:
        rc = self._lineup.get(job.id)
        if job.state in (S.RUNNING, S.CANCEL_REQUESTED) and rc is not None:
            if job.state == S.RUNNING:
                await self._transitions.apply(
                    job, "cancel", S.CANCEL_REQUESTED, cause="cancel requested", actor=actor
                )
            rc.stop(CANCEL, actor)  # stops its steps, or makes its live window end canceled
            self._live.end_now(rc)
            await self._settle_briefly(job.id)
            return
        await self._leave_line(job)
        await self._transitions.apply(
            job,
            "cancel",
            S.CANCELED,
            cause=SET_WISE["cancel"].cause,
            actor=actor,
            unit=self._ctx.store.changes().release(job.id),
        )
        self._bookings.remove_job(job.id)

    async def _stop(self, job: Job, actor: str) -> None:
        rc = self._lineup.get(job.id)
        if rc is None or job.spec.end_at is None:
            raise NotApplicable(
                f"job {job.id} has no live window to stop (no end_at); use cancel to end its run",
                {"job_id": job.id},
            )
        self._transitions.history_only(job, "stop requested: ending the live window now", actor)
        if not self._live.end_now(rc):
            # Steps still running: end the window as soon as they are done.
            rc.job.spec = replace(rc.job.spec, end_at=self._ctx.clock(), postroll=0.0)
        await self._settle_briefly(job.id)

    async def _pause(self, job: Job, actor: str) -> None:
        rc = self._lineup.get(job.id)
        if job.state == S.RUNNING and rc is not None:
            if self._live.close(job.id):
                await self._live.pause(rc, actor)
                return
            rc.stop(PAUSE, actor)
            await self._settle_briefly(job.id)
            return
        await self._leave_line(job)
        await self._transitions.apply(
            job, "pause", S.PAUSED, cause=SET_WISE["pause"].cause, actor=actor
        )

    async def _leave_line(self, job: Job) -> None:
        """Take a job that is not running out of the queue, lock waits, or pending count."""
        if job.state == S.PENDING:
            self._placement.leave_pending()
        self._placement.unqueue(job.id)
        self._grants.leave(job.id)
        await self._placement.admit()

    async def _settle_briefly(self, job_id: int) -> None:
        """Give a stopping run a few seconds to finish, so the answer usually shows the end
        state; a slow end script or kill grace leaves it in ``cancel-requested``/``running``."""
        with anyio.move_on_after(OPERATION_WAIT):
            await self._lineup.wait_until_inactive(job_id)

    # ---------------------------------------------------------------- running again
    async def _resume(self, job: Job, actor: str) -> None:
        due = self._due_from_now(job)
        await self._transitions.apply(
            job, "resume", S.CONFIRMED, cause="resumed", actor=actor, due_at=due
        )
        self._placement.schedule_due(due)

    def _due_from_now(self, job: Job) -> float:
        """Its own due time if that is still ahead, else now."""
        now = self._ctx.clock()
        due = job.spec.due_at
        return due if due is not None and due > now else now

    async def _retry(self, job: Job, actor: str) -> None:
        await self._rerun(job, "retry", actor, reset_all=False)

    async def _restart(self, job: Job, actor: str) -> None:
        await self._rerun(job, "restart", actor, reset_all=True)

    async def _rerun(self, job: Job, operation: str, actor: str, *, reset_all: bool) -> None:
        store = self._ctx.store
        job.steps = await store.load_steps(job.id)
        # A new run: its start script runs again (SPEC §3, "A run begins ...").
        job.run_started_at = None
        unit = store.changes().set_run_started(job.id, None)
        for step in job.steps:
            if reset_all or step.state != StepState.COMPLETED:
                unit.reset_step(job.id, step.idx)
        had_reservations = job.state == S.PAUSED
        reservations = [] if had_reservations else self._intake.reserve(job)
        for res in reservations:
            unit.reserve(res)
        try:
            due = self._due_from_now(job)
            await self._transitions.apply(
                job,
                operation,
                S.CONFIRMED,
                cause=f"{operation} requested",
                actor=actor,
                unit=unit,
                error=None,
                due_at=due,
            )
        except BaseException:
            if not had_reservations:
                self._bookings.remove_job(job.id)
            raise
        self._placement.schedule_due(due)

    async def _resubmit(self, job: Job, actor: str) -> Job:
        spec = replace(
            job.spec,
            state=S.CONFIRMED if job.spec.state not in (S.DRAFT, S.TENTATIVE) else job.spec.state,
        )
        # The old job stays exactly as it was (SPEC §2): only the new one's history says
        # where it came from.
        return await self._intake.submit(spec, actor=actor, cause=f"resubmitted from job {job.id}")

    # ---------------------------------------------------------------- bookings' life
    async def _confirm(self, job: Job, actor: str) -> None:
        await self._book_and_move(job, "confirm", S.CONFIRMED, actor)
        self._placement.schedule_due(job.due_at)
        await self._placement.process_due()

    async def _tentative(self, job: Job, actor: str) -> None:
        await self._book_and_move(job, "tentative", S.TENTATIVE, actor)

    async def _book_and_move(self, job: Job, op: str, target: JobState, actor: str) -> None:
        clock = self._ctx.clock
        unit = self._ctx.store.changes()
        new = []
        if job.state == S.DRAFT:
            job.reservations = []
            new = self._intake.reserve(job)
            for res in new:
                unit.reserve(res)
        due = job.spec.due_at if job.spec.due_at is not None else clock()
        error = job.error
        if error is not None and error.code == OverlayCode.NOT_CONFIRMED and target == S.CONFIRMED:
            error = None if (job.spec.start_at or 0) > clock() else error
        try:
            await self._transitions.apply(
                job,
                op,
                target,
                cause=f"{op} requested",
                actor=actor,
                unit=unit,
                due_at=due,
                error=error,
            )
        except BaseException:
            if new:
                self._bookings.remove_job(job.id)
            raise

    async def _unconfirm(self, job: Job, actor: str) -> None:
        await self._plain(job, "unconfirm", actor)

    async def _invoice_ready(self, job: Job, actor: str) -> None:
        await self._plain(job, "invoice-ready", actor)

    async def _invoiced(self, job: Job, actor: str) -> None:
        await self._plain(job, "invoiced", actor)

    async def _plain(self, job: Job, operation: str, actor: str) -> None:
        """An operation that is its transition alone (a batch's set-wise write does the same)."""
        way = SET_WISE[operation]
        await self._transitions.apply(job, operation, way.target, cause=way.cause, actor=actor)

    async def _delete(self, job: Job, actor: str) -> None:
        store = self._ctx.store
        now = self._ctx.clock()
        unit = (
            store.changes()
            .delete_job(job.id, job.state)
            .record_history(job.id, now, job.state, None, "deleted", actor)
        )
        try:
            await store.commit(unit)
        except GuardFailed:
            raise InvalidTransition(
                "delete", job.state, allowed_operations(job.state), job_id=job.id
            ) from None
        self._bookings.remove_job(job.id)
        self._fanout.emit(JobEvent(job.id, "deleted", now, job.state, None, "deleted", actor))
