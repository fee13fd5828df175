"""Operations on one job (SPEC §2) and on many (``POST /v1/batch/{operation}``).

Each public operation is a handler ``(job, actor)`` here; :meth:`Operations.operate`
checks the transition table first, the handler does the rest through the one
transition path. A running job is stopped through its run control (cancel,
pause, stop) and the answer waits briefly for the run to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import anyio

from jobd.core.errors import InvalidTransition, JobdError, NotApplicable, NotFound, ValidationError
from jobd.core.events import JobEvent
from jobd.core.models import Job, OverlayCode
from jobd.core.states import ACTIVE, JobState, StepState, allowed_operations, check_transition
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.engine.forward import MOVED, NodeUnavailable, Outcome, Remote
from jobd.engine.lineup import Lineup, load_live
from jobd.engine.ports import Booking, Grants, LiveOps, Placement
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex
from jobd.run.runner import CANCEL, PAUSE
from jobd.store import GuardFailed

S = JobState
#: How long cancel/pause/stop of a running job wait for it to stop before answering.
OPERATION_WAIT = 5.0
#: Jobs of one batch operation in progress at once (their writes share transactions).
BATCH_CONCURRENCY = 10_000
#: Jobs read per hop when a batch loads its jobs.
LOAD_BATCH = 500
#: Times an operation follows a job that moves to another node while it is being asked.
MOVES = 3
Handler = Callable[[Job, str], Awaitable[Job | None]]


@dataclass(slots=True)
class BatchOutcome:
    """What :meth:`Engine.operate_many` did: ids done and refused, in the order asked."""

    done: list[int]
    refused: list[tuple[int, JobdError]]
    #: ``resubmit``: the new job of each job done, in the same order.
    created: list[int]

    @classmethod
    def of(cls, ids: list[int], outcome: Mapping[int, JobdError | Job | None]) -> BatchOutcome:
        done, refused, created = [], [], []
        for job_id in ids:
            result = outcome[job_id]
            if isinstance(result, JobdError):
                refused.append((job_id, result))
                continue
            done.append(job_id)
            if isinstance(result, Job):
                created.append(result.id)
        return cls(done, refused, created)


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
        check_transition(operation, job.state)
        return await handler(job, actor)

    async def _holder(self, job: Job, operation: str) -> str | None:
        """The other node that holds ``job``, when the operation must be done there."""
        if operation == "resubmit" or job.state not in ACTIVE or job.id in self._lineup:
            return None
        return (await self._remote.holders([job.id])).get(job.id)

    async def perform_here(
        self, job_ids: list[int], operation: str, actor: str
    ) -> dict[int, JobdError | None]:
        """Another node's operation on jobs this node holds: per job None (done) or the
        refusal, each done with this node's engine and never forwarded again."""
        outcome = await self.operate_many(job_ids, operation, actor, here=True)
        return {**dict.fromkeys(outcome.done), **dict(outcome.refused)}

    async def operate_many(
        self, job_ids: list[int], operation: str, actor: str, *, here: bool = False
    ) -> BatchOutcome:
        """See :meth:`jobd.engine.Engine.operate_many`; the jobs other nodes hold are sent
        to them, one request per node (unless ``here``)."""
        handler = self.handler(operation)
        ids = list(dict.fromkeys(job_ids))
        jobs = await self._load_many(ids)
        outcome: dict[int, JobdError | Job | None] = {}
        if not here and operation != "resubmit":
            outcome.update(await self._forward_many(jobs, operation, actor))
        rest = [i for i in ids if i not in outcome]
        # In chunks, each job its own asyncio task: an anyio task group and a capacity
        # limiter cost ~100 µs a job, the whole budget of a batch cancel.
        for start in range(0, len(rest), BATCH_CONCURRENCY):
            chunk = rest[start : start + BATCH_CONCURRENCY]
            results = await asyncio.gather(
                *(self._operate_one(jobs.get(i), i, operation, handler, actor) for i in chunk)
            )
            outcome.update(zip(chunk, results, strict=True))
        return BatchOutcome.of(ids, outcome)

    async def _forward_many(
        self, jobs: dict[int, Job], operation: str, actor: str
    ) -> dict[int, JobdError | Job | None]:
        """The jobs of ``jobs`` that other nodes hold, done (or refused) by their nodes."""
        lineup = self._lineup
        held = [i for i, job in jobs.items() if job.state in ACTIVE and i not in lineup]
        by_node: dict[str, list[int]] = {}
        for job_id, node in (await self._remote.holders(held) if held else {}).items():
            by_node.setdefault(node, []).append(job_id)
        if not by_node:
            return {}
        answers = await asyncio.gather(
            *(self._forward_to(node, ids, operation, actor) for node, ids in by_node.items())
        )
        outcome: dict[int, JobdError | Job | None] = {}
        for answer in answers:
            for job_id, result in answer.items():
                outcome[job_id] = (
                    await self._operate_moved(job_id, operation, actor)
                    if result == MOVED
                    else result
                    if isinstance(result, JobdError)
                    else None
                )
        return outcome

    async def _forward_to(
        self, node: str, ids: list[int], operation: str, actor: str
    ) -> dict[int, Outcome]:
        try:
            return await self._remote.forward(node, ids, operation, actor)
        except NodeUnavailable as exc:
            return dict.fromkeys(ids, exc)

    async def _operate_moved(self, job_id: int, operation: str, actor: str) -> JobdError | None:
        """A job of a batch that moved while its node was asked: decided again, alone."""
        try:
            await self.operate(job_id, operation, actor)
        except JobdError as exc:
            return exc
        return None

    async def _operate_one(
        self, job: Job | None, job_id: int, operation: str, handler: Handler, actor: str
    ) -> JobdError | Job | None:
        """One job of a batch: the new job (resubmit), None (done) or the refusal."""
        if job is None:
            return NotFound("job", job_id)
        try:
            try:
                check_transition(operation, job.state)
            except InvalidTransition:
                allowed = allowed_operations(job.state)
                raise InvalidTransition(operation, job.state, allowed, job_id=job_id) from None
            result = await handler(job, actor)
        except JobdError as exc:
            return exc
        return result if isinstance(result, Job) else None

    async def _load_many(self, job_ids: list[int]) -> dict[int, Job]:
        """The jobs of ``job_ids`` that exist: a running one as the engine holds it, the others
        read in chunks (one reader hop each)."""
        active = self._lineup.active
        jobs = {i: active[i].job for i in job_ids if i in active}
        rest = [i for i in job_ids if i not in jobs]
        for start in range(0, len(rest), LOAD_BATCH):
            for job in await self._ctx.store.load_jobs(rest[start : start + LOAD_BATCH]):
                # Loaded while the read was in flight: the engine's copy is the live one.
                jobs[job.id] = active[job.id].job if job.id in active else job
        return jobs

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
            cause="canceled",
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
        await self._transitions.apply(job, "pause", S.PAUSED, cause="paused", actor=actor)

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
        await self._transitions.apply(
            job, "unconfirm", S.TENTATIVE, cause="unconfirmed", actor=actor
        )

    async def _invoice_ready(self, job: Job, actor: str) -> None:
        await self._transitions.apply(
            job, "invoice-ready", S.READY_FOR_INVOICE, cause="final figures fixed", actor=actor
        )

    async def _invoiced(self, job: Job, actor: str) -> None:
        await self._transitions.apply(job, "invoiced", S.INVOICED, cause="invoiced", actor=actor)

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
