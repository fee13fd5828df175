"""The SQLite unit of work: the contract's intents as statements for the writer process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobd.core.models import ErrorOverlay, Job, JobSpec, Reservation, Step
from jobd.core.states import JobState
from jobd.store.codec import (
    error_to_json,
    job_row,
    redefine_row,
    step_record_row,
    step_row,
)
from jobd.store.contract import KEEP, Changes
from jobd.store.sqlite import queries as q

Params = Sequence[Any]


class Unit(Changes):
    """Statements applied atomically by the writer; ``guarded`` indexes must change a row.

    ``appended``: the unit's history rows, which the writer inserts after every unit of the
    transaction, one ``executemany`` for all (``sqlwriter.apply_batches``), if the unit was
    applied. Every history row goes there, so that a job's rows keep their order (their
    ids); nothing else in a transaction reads the history. ``ordered``: the unit's own
    statements write history rows (a set-based transition's ``INSERT ... SELECT``), so the
    writer writes the rows appended before it first.

    :meth:`add` is this backend's own primitive (tests of the writer use it); the engine
    uses the intents of :class:`~jobd.store.contract.Changes` only."""

    __slots__ = ("appended", "guarded", "ordered", "statements")

    def __init__(self) -> None:
        self.statements: list[tuple[str, Params]] = []
        self.guarded: set[int] = set()
        self.appended: list[tuple[str, Params]] = []
        self.ordered = False

    def add(self, sql: str, params: Params, *, guard: bool = False) -> Unit:
        if guard:
            self.guarded.add(len(self.statements))
        self.statements.append((sql, params))
        return self

    def _guard_first(self, sql: str, params: Params) -> Unit:
        # The guard goes first: when it matches no row, nothing of the unit has been applied
        # (the writer needs no savepoint for that shape).
        self.statements.insert(0, (sql, params))
        self.guarded = {0, *(i + 1 for i in self.guarded)} if self.guarded else {0}
        return self

    # ---------------------------------------------------------------- jobs
    def insert_job(self, job: Job) -> Unit:
        params = job_row(job)
        self.statements.append((q.INSERT_JOB, params))
        return self

    def transition(
        self,
        job_id: int,
        from_state: JobState,
        to_state: JobState,
        at: float,
        cause: str,
        actor: str,
        *,
        error: ErrorOverlay | None = KEEP,
        due_at: float | None = KEEP,
    ) -> Unit:
        # The hottest intent (every job makes four): built inline, the guard first.
        frm, to = str(from_state), str(to_state)
        params: list[Any] = [to, at]
        if error is not KEEP:
            params.append(error_to_json(error))
        if due_at is not KEEP:
            params.append(due_at)
        params += (job_id, frm)
        statements = self.statements
        statements.insert(0, (q.TRANSITION[error is not KEEP, due_at is not KEEP], params))
        self.guarded = {0, *(i + 1 for i in self.guarded)} if self.guarded else {0}
        self.appended.append((q.INSERT_HISTORY, (job_id, at, frm, to, cause, actor)))
        return self

    def record_history(
        self,
        job_id: int,
        at: float,
        from_state: JobState | None,
        to_state: JobState | None,
        cause: str,
        actor: str,
    ) -> Unit:
        frm = None if from_state is None else str(from_state)
        to = None if to_state is None else str(to_state)
        self.appended.append((q.INSERT_HISTORY, (job_id, at, frm, to, cause, actor)))
        return self

    def redefine_job(
        self, job_id: int, spec: JobSpec, due_at: float, steps: Sequence[Step]
    ) -> Unit:
        self.add(q.DELETE_STEPS, (job_id,))
        for step in steps:
            self.insert_step(step)
        return self.add(q.REDEFINE_JOB, redefine_row(job_id, spec, due_at))

    def delete_job(self, job_id: int, state: JobState) -> Unit:
        self._guard_first(q.DELETE_JOB_GUARDED, (job_id, str(state)))
        for sql in (q.DELETE_STEPS, q.DELETE_RESERVATIONS, q.DELETE_LOG):
            self.add(sql, (job_id,))
        return self

    def set_error(
        self, job_id: int, error: ErrorOverlay | None, at: float, *, only_if_clear: bool = False
    ) -> Unit:
        sql = q.SET_ERROR_IF_CLEAR if only_if_clear else q.SET_ERROR
        return self.add(sql, (error_to_json(error), at, job_id))

    def set_run_started(self, job_id: int, at: float | None) -> Unit:
        return self.add(q.SET_RUN_STARTED, (at, job_id))

    def set_progress(self, job_id: int, progress: float, message: str | None) -> Unit:
        return self.add(q.SET_PROGRESS, (progress, message, job_id))

    # ---------------------------------------------------------------- steps
    def insert_step(self, step: Step) -> Unit:
        self.statements.append((q.INSERT_STEP, step_row(step)))
        return self

    def record_step(self, step: Step) -> Unit:
        self.statements.append((q.RECORD_STEP, step_record_row(step)))
        return self

    def set_step_pgid(self, job_id: int, idx: int, pgid: int | None) -> Unit:
        return self.add(q.SET_STEP_PGID, (pgid, job_id, idx))

    def reset_step(self, job_id: int, idx: int) -> Unit:
        return self.add(q.RESET_STEP, (job_id, idx))

    def interrupt_step(self, job_id: int, idx: int, error: str, *, retry: bool, at: float) -> Unit:
        if retry:
            return self.add(q.REQUEUE_STEP, (error, job_id, idx))
        return self.add(q.FAIL_STEP, (error, at, job_id, idx))

    # ---------------------------------------------------------------- bookings
    def reserve(self, reservation: Reservation) -> Unit:
        r = reservation
        return self.add(q.INSERT_RESERVATION, (r.job_id, r.resource, r.start, r.end, r.pool))

    def release(self, job_id: int) -> Unit:
        return self.add(q.DELETE_RESERVATIONS, (job_id,))

    # ---------------------------------------------------------------- logs, schedules
    def append_log(
        self, job_id: int, at: float, step: str | None, level: str, message: str
    ) -> Unit:
        self.statements.append((q.INSERT_LOG, (job_id, at, step, level, message)))
        return self

    def record_firing(
        self,
        schedule: str,
        fire_time: float,
        kind: str | None,
        *,
        job_id: int | None = None,
        reason: str | None = None,
        at: float = 0.0,
    ) -> Unit:
        self.add(q.ENSURE_SCHEDULE, (schedule,))
        if kind == "fired":
            self.add(q.SCHEDULE_FIRED, (fire_time, job_id, schedule))
        elif kind is None:
            self.add(q.SCHEDULE_CLOCK, (fire_time, schedule))
        else:
            not_run = q.SCHEDULE_NOT_RUN.get(kind, q.SCHEDULE_NOT_RUN["skipped"])
            self.add(not_run, (fire_time, schedule))
        if kind is not None:
            self.add(q.INSERT_SCHEDULE_EVENT, (schedule, at, fire_time, kind, job_id, reason))
        return self

    def set_schedule_paused(
        self, schedule: str, paused_at: float | None, at: float, actor: str
    ) -> Unit:
        kind = "paused" if paused_at is not None else "resumed"
        self.add(q.ENSURE_SCHEDULE, (schedule,))
        self.add(q.SCHEDULE_PAUSED, (paused_at, schedule))
        return self.add(
            q.INSERT_SCHEDULE_EVENT, (schedule, at, at, kind, None, f"{kind} by {actor}")
        )


def job_insert(job: Job) -> tuple[str, Params]:
    """The INSERT of a new job as ``(sql, params)``, for bulk loaders (``executemany``)."""
    return Unit().insert_job(job).statements[0]


def step_insert(step: Step) -> tuple[str, Params]:
    """The INSERT of a new step as ``(sql, params)``, for bulk loaders."""
    return Unit().insert_step(step).statements[0]
