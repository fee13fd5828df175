"""Intake: a submission (or an edit) validated, given its steps and bookings, and stored.

A job's id is taken only once everything is checked and booked: a refusal uses
up no id, so ids stay dense on one node (:mod:`.ids`: a cluster's nodes take
blocks of ids from the database). Its reservations are held in the booking index
*before* the commit (so no concurrent submission takes the same slot) and
dropped again when the commit fails. A job due at once is enqueued before its
commit (see :mod:`.admission`, "enqueue before commit").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from jobd.core.errors import (
    BookingConflict,
    InvalidTransition,
    JobdError,
    NotFound,
    ShuttingDown,
    ValidationError,
)
from jobd.core.events import JobEvent
from jobd.core.models import (
    SPEC_FIELDS,
    ErrorOverlay,
    HistoryEntry,
    Job,
    JobSpec,
    OverlayCode,
    Reservation,
    Step,
)
from jobd.core.states import EDITABLE, HOLDS_RESERVATION, JobState, allowed_operations
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.engine.ids import JobIds
from jobd.engine.lineup import Lineup, load_live
from jobd.engine.ports import Placement, Wakeup
from jobd.engine.transitions import Transitions
from jobd.engine.validation import build_steps, validate_spec, workflow_of
from jobd.plan.bookings import BookingIndex
from jobd.store import Changes

S = JobState
T = TypeVar("T")


@dataclass(slots=True)
class _Intake:
    """A submission that passed validation and holds its bookings, not yet written."""

    job: Job
    now: float
    actor: str
    #: ``(from, to, cause)`` rows to write: submitted, then due if it is due at once.
    history: list[tuple[JobState | None, JobState, str]]


class Intake:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        fanout: Fanout,
        bookings: BookingIndex,
        placement: Placement,
        wakeup: Wakeup,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._fanout = fanout
        self._bookings = bookings
        self._placement = placement
        self._wakeup = wakeup
        #: The ids this node gives to the jobs it accepts (recovery loads them).
        self.ids = JobIds(ctx)

    async def load_ids(self) -> None:
        """See :class:`~.ports.Ids`."""
        await self.ids.load()

    async def submit(
        self,
        spec: JobSpec,
        *,
        actor: str = "api",
        cause: str = "submitted",
        firing: tuple[str, float] | None = None,
    ) -> Job:
        """See :meth:`jobd.engine.Engine.submit`."""
        if self._ctx.tg is None:
            raise ShuttingDown()
        intake = await self._after_ends_landed(lambda: self._take_one(spec, actor, cause))
        return (await self._store_intakes([intake], firing))[0]

    async def _take_one(self, spec: JobSpec, actor: str, cause: str) -> _Intake:
        await self.ids.ensure(1)  # before the checks: nothing awaits between them and the id
        intake = self._intake(spec, self.ids.peek(), self._ctx.clock(), actor, cause)
        self.ids.take()  # every check passed and the booking is held: take the id
        return intake

    async def submit_many(self, specs: list[JobSpec], *, actor: str = "api") -> list[Job]:
        """See :meth:`jobd.engine.Engine.submit_many`."""
        if self._ctx.tg is None:
            raise ShuttingDown()
        intakes = await self._after_ends_landed(lambda: self._take_many(specs, actor))
        return await self._store_intakes(intakes)

    async def _take_many(self, specs: list[JobSpec], actor: str) -> list[_Intake]:
        await self.ids.ensure(len(specs))
        now = self._ctx.clock()
        intakes: list[_Intake] = []
        try:
            for index, spec in enumerate(specs):
                try:
                    intakes.append(self._intake(spec, self.ids.peek(index), now, actor))
                except JobdError as exc:
                    raise exc.in_batch(index) from None
        except BaseException:
            for intake in intakes:
                self._bookings.remove_job(intake.job.id)
            raise
        self.ids.take(len(intakes))
        return intakes

    async def _after_ends_landed(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()``; refused for a booking conflict, once more when every write
        queued so far has landed. A reader of the store (a client's ``GET``) can see a job's
        end committed before this loop has heard the writer's answer and freed the job's
        slots in the booking index: a client that saw the end and books the slot at once is
        not refused for it. A real conflict pays one round trip to the writer more."""
        try:
            return await attempt()
        except BookingConflict:
            await self._ctx.store.flush()
        return await attempt()

    def _intake(
        self, spec: JobSpec, job_id: int, now: float, actor: str, cause: str = "submitted"
    ) -> _Intake:
        """Validate ``spec`` as job ``job_id`` and hold its bookings in the index; nothing is
        written and no id claimed yet. Raises ValidationError, BookingConflict."""
        ctx = self._ctx
        workflow = workflow_of(ctx.config, spec.workflow)
        if spec.state not in (S.DRAFT, S.TENTATIVE, S.CONFIRMED):
            raise ValidationError(
                f"a job is submitted as draft, tentative or confirmed, not {spec.state}",
                field="state",
            )
        validate_spec(spec, ctx.config)
        steps = build_steps(workflow, spec, ctx.config, ctx.plugins)
        job = Job(
            id=job_id, spec=spec, state=spec.state, created_at=now, updated_at=now, steps=steps
        )
        if ctx.plugins.validates_jobs:
            problems = ctx.plugins.validate_job(job.to_dict(), ctx.config)
            if problems:
                raise ValidationError(problems)
        for step in steps:
            step.job_id = job.id
        job.reservations = self.reserve(job) if spec.state in HOLDS_RESERVATION else []
        if (
            spec.state in (S.DRAFT, S.TENTATIVE)
            and spec.start_at is not None
            and spec.start_at <= now
        ):
            job.error = ErrorOverlay(
                OverlayCode.NOT_CONFIRMED,
                "the start time passed before the job was confirmed; it will not run",
                now,
            )
        job.due_at = spec.due_at if spec.due_at is not None else now
        return _Intake(job, now, actor, [(None, spec.state, cause)])

    async def _store_intakes(
        self, intakes: list[_Intake], firing: tuple[str, float] | None = None
    ) -> list[Job]:
        """Place accepted jobs (queued, pending or waiting for their time), write them in ONE
        unit, then tell everyone. Returns each job as GET would show it after the write.
        ``firing``: the schedule firing the (one) job is, recorded in the same unit: on a
        cluster the database lets one node record each firing (GuardFailed for the others)."""
        unit = self._ctx.store.changes()
        shown = [self._place(intake, unit) for intake in intakes]
        if firing is not None:
            job, now = intakes[0].job, intakes[0].now
            unit.record_firing(firing[0], firing[1], "fired", job_id=job.id, at=now)
        try:
            await self._ctx.store.commit(unit)
        except BaseException:
            for intake in intakes:
                self._bookings.remove_job(intake.job.id)
                self._placement.unqueue(intake.job.id)
            raise
        for intake, job in zip(intakes, shown, strict=True):
            self._after_stored(intake, job.state)
        return shown

    def _place(self, intake: _Intake, unit: Changes) -> Job:
        """Due now: queued (or pending when the queue is full); add the job's rows to ``unit``."""
        job, now, actor, history = intake.job, intake.now, intake.actor, intake.history
        spec = job.spec
        due_now = spec.state == S.CONFIRMED and (spec.due_at is None or spec.due_at <= now)
        if due_now and self._ctx.accepting:
            elsewhere = self._placement.not_here(job)
            target = S.QUEUED if elsewhere is None and self._placement.has_room() else S.PENDING
            history.append((S.CONFIRMED, target, elsewhere or "due"))
            job.state = target
        unit.insert_job(job)
        for step in job.steps:
            unit.insert_step(step)
        for res in job.reservations:
            unit.reserve(res)
        for frm, to, cause in history:
            unit.record_history(job.id, now, frm, to, cause, actor)
        # The caller gets the job as GET would show it right after this write (with its
        # history), not as a worker may have changed it meanwhile; the engine's own copy
        # keeps no history in memory.
        shown = Job(  # built whole: replace_job's setattr of each change, and lists replaced
            id=job.id,
            spec=spec,
            state=job.state,
            created_at=job.created_at,
            updated_at=job.updated_at,
            error=job.error,
            due_at=job.due_at,
            run_started_at=job.run_started_at,
            steps=[step.copy() for step in job.steps],
            reservations=job.reservations,
            history=[HistoryEntry(now, frm, to, cause, actor) for frm, to, cause in history],
        )
        if shown.state == S.QUEUED:
            # Enqueued before the commit: a worker may take it now; its `running` write
            # queues behind this insert, so the run starts one commit sooner.
            self._placement.enqueue(job)
            self._wakeup.wake_one()
        return shown

    def _after_stored(self, intake: _Intake, state: JobState) -> None:
        job = intake.job
        if state == S.PENDING:
            self._placement.add_pending(job)
        elif state == S.CONFIRMED:
            self._placement.schedule_due(job.due_at)
        elif state != S.QUEUED and job.error is None:
            # Draft or tentative: wake at its start to mark it `not-confirmed` if still so.
            self._placement.schedule_due(job.spec.start_at)
        for frm, to, cause in intake.history:
            event = JobEvent(job.id, "state", intake.now, frm, to, cause, intake.actor)
            self._fanout.emit(event, job)

    def reserve(self, job: Job) -> list[Reservation]:
        """Plan and hold the job's reservations in the index (before the commit, so no
        concurrent submission can take the same slot)."""
        spec = job.spec
        window = spec.window
        if window is None or not (spec.resources or spec.pools):
            return []
        if spec.end_at is None:
            raise ValidationError("booking resources or pools needs end_at", field="end_at")
        job_dict = job.to_dict()
        plugins = self._ctx.plugins

        def select(pool: str, candidates: list[str]) -> str | None:
            return plugins.select_resource(pool, candidates, job_dict)

        planned = self._bookings.plan(
            job.id, spec.resources, spec.pools, window[0], window[1], select=select
        )
        self._bookings.add(planned)
        return planned

    async def edit(self, job_id: int, changes: dict[str, Any], *, actor: str = "api") -> Job:
        """See :meth:`jobd.engine.Engine.edit`. Returns the job as stored after the edit."""
        return await self._after_ends_landed(lambda: self._edit(job_id, changes, actor))

    async def _edit(self, job_id: int, changes: dict[str, Any], actor: str) -> Job:
        ctx = self._ctx
        job = await load_live(self._lineup, ctx.store, job_id)
        if job.state not in EDITABLE:
            raise InvalidTransition("edit", job.state, allowed_operations(job.state), job_id=job_id)
        spec, steps = self._edited(job, changes)
        old = self._bookings.for_job(job_id)
        self._bookings.remove_job(job_id)
        try:
            holds = job.state in HOLDS_RESERVATION
            new_res = self.reserve(replace_job(job, spec=spec)) if holds else []
        except JobdError:
            self._bookings.add(old)
            raise
        due = spec.due_at if spec.due_at is not None else ctx.clock()
        unit = ctx.store.changes().release(job_id)
        for res in new_res:
            unit.reserve(res)
        unit.redefine_job(job_id, spec, due, steps)
        try:
            await self._transitions.apply(
                job, "edit", job.state, cause="edited", actor=actor, unit=unit
            )
        except BaseException:
            self._bookings.remove_job(job_id)
            self._bookings.add(old)
            raise
        # Confirmed: its due time; draft or tentative: its start (`not-confirmed` check).
        self._placement.schedule_due(spec.due_at if job.state == S.CONFIRMED else spec.start_at)
        stored = await ctx.store.load_job(job_id)
        if stored is None:
            raise NotFound("job", job_id)
        return stored

    def _edited(self, job: Job, changes: dict[str, Any]) -> tuple[JobSpec, list[Step]]:
        """The spec and steps an edit makes, validated (as a submission's are)."""
        ctx = self._ctx
        unknown = set(changes) - SPEC_FIELDS.editable
        if unknown:
            raise ValidationError(f"cannot edit {', '.join(sorted(unknown))}")
        lists = SPEC_FIELDS.lists
        norm: dict[str, Any] = {k: tuple(v) if k in lists else v for k, v in changes.items()}
        spec = replace(job.spec, **norm)
        validate_spec(spec, ctx.config)
        steps = build_steps(workflow_of(ctx.config, spec.workflow), spec, ctx.config, ctx.plugins)
        for step in steps:
            step.job_id = job.id
        problems = ctx.plugins.validate_job(replace_job(job, spec=spec).to_dict(), ctx.config)
        if problems:
            raise ValidationError(problems)
        return spec, steps


def replace_job(job: Job, **changes: Any) -> Job:
    """A copy of ``job``'s own fields (no steps, reservations, history) with ``changes``."""
    new = Job(
        id=job.id,
        spec=job.spec,
        state=job.state,
        created_at=job.created_at,
        updated_at=job.updated_at,
        error=job.error,
        due_at=job.due_at,
        run_started_at=job.run_started_at,
    )
    for key, value in changes.items():
        setattr(new, key, value)
    return new
